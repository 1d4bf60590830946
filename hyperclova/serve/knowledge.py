"""Knowledge injection (HyperCLOVA §5.3's prompt injection module): BM25 over your documents.

`--knowledge PATH ...` reads JSONL or text documents through the project's one reader
(`hyperclova.data.reader`: files, directories, globs, .gz/.zst, bad lines counted), cuts them into
passages, and indexes them with `bm25s`. Korean is matched on MeCab-ko morphemes (the tokenizer's
pre-tokenization), so "서울의" finds "서울". A request with `"retrieve": k` gets the k best
passages prepended to its prompt, as many as fit in `retrieve_tokens`, in this form:

    참고 자료:
    - <passage>
    - <passage>

    <prompt>

and the response lists them under `knowledge` (id, source file:line, score, text).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from hyperclova.errors import UserError

HEADER = "참고 자료:\n"
PASSAGE_CHARS = 400
_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+|\n+")


@dataclass
class Passage:
    id: str
    source: str
    text: str


def split_passages(text: str, max_chars: int = PASSAGE_CHARS) -> list[str]:
    """Sentences packed into passages of at most max_chars (a longer sentence stands alone)."""
    out, cur = [], ""
    for sent in (s.strip() for s in _SENTENCE_END.split(text)):
        if not sent:
            continue
        if cur and len(cur) + 1 + len(sent) > max_chars:
            out.append(cur)
            cur = sent
        else:
            cur = f"{cur} {sent}" if cur else sent
    if cur:
        out.append(cur)
    return out


class KnowledgeBase:
    def __init__(self, passages: list[Passage]):
        import bm25s

        from hyperclova.tokenizer.morphemes import MorphemeSplitter

        if not passages:
            raise UserError("--knowledge: the documents hold no text to index")
        self.passages = passages
        self._splitter = MorphemeSplitter()
        self._bm25 = bm25s.BM25()
        self._bm25.index([self._terms(p.text) for p in passages], show_progress=False)

    @classmethod
    def from_paths(cls, paths: list[str], json_keys: tuple[str, ...] = ("text",)) -> tuple["KnowledgeBase", str]:
        """(index, the reader's summary line) for JSONL/text documents at `paths`."""
        from hyperclova.data.reader import ReadStats, expand_inputs, iter_records

        stats = ReadStats()
        passages = []
        for rec in iter_records(expand_inputs(paths), json_keys=json_keys, stats=stats):
            text = "\n".join(rec.texts)
            for i, part in enumerate(split_passages(text)):
                passages.append(Passage(f"{len(passages)}", f"{rec.path}:{rec.line}", part))
        return cls(passages), stats.summary()

    def _terms(self, text: str) -> list[str]:
        terms = [s.strip().lower() for s in self._splitter.segments(text)]
        return [t for t in terms if t] or ["\x00"]  # bm25s needs a token per document

    def search(self, query: str, k: int) -> list[tuple[Passage, float]]:
        k = min(k, len(self.passages))
        if k <= 0:
            return []
        docs, scores = self._bm25.retrieve([self._terms(query)], k=k, show_progress=False)
        return [(self.passages[int(d)], float(s)) for d, s in zip(docs[0], scores[0]) if s > 0]

    def block(self, query: str, k: int, budget_tokens: int, count_tokens) -> tuple[str, list[dict]]:
        """The text to put before a prompt: up to k passages for `query` within budget_tokens
        ("" when none fits), and a description of the passages used."""
        used, block = [], HEADER
        for p, score in self.search(query, k):
            line = f"- {p.text}\n"
            if count_tokens(block + line) > budget_tokens:
                break
            block += line
            used.append({"id": p.id, "source": p.source, "score": round(score, 4), "text": p.text})
        return (block + "\n", used) if used else ("", [])
