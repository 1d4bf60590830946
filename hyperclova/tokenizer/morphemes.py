"""MeCab-ko morpheme segmentation (HyperCLOVA §3.3).

A *segment* is a morpheme surface together with the whitespace before it, so joining the segments
gives back the input exactly. `mark` returns the same information as one string: segments joined by
`MARKER`, which is what the BPE pre-tokenizer, the trainer and the fast encoder consume.

MeCab gets the text in chunks of at most `CHUNK_CHARS` characters, cut after a newline (or a space,
or hard): its lattice grows with the sentence, so a 10 MB line must not reach it whole. Its time is
quadratic in the length of a run without whitespace (unknown-word grouping), so such runs are cut
every `MAX_WORD_CHARS`, and runs of one repeated character (ㅋㅋㅋ..., =====) skip MeCab entirely
and become `MAX_RUN`-character segments. NUL cannot pass through MeCab's C strings, so NUL
characters are segments of their own. Chunk cuts are segment boundaries; they depend only on the
text, so training and encoding see the same segments.
"""
from __future__ import annotations

import re

from hyperclova.tokenizer.pretokenize import MARKER, MAX_RUN

CHUNK_CHARS = 8192
MAX_WORD_CHARS = 256
# Text MeCab must not see whole: NUL, runs of one character, very long whitespace-free runs.
_SPECIAL_RUN = re.compile(r"\x00|(.)\1{%d,}|[^\s\x00]{%d,}" % (MAX_RUN - 1, MAX_WORD_CHARS + 1), re.S)
# %M is the surface with its preceding whitespace; the marker follows every morpheme.
_MECAB_ARGS = f"--node-format=%M{MARKER} --unk-format=%M{MARKER} --eos-format= --bos-format="


class MorphemeSplitter:
    """Splits text into MeCab-ko morpheme segments. Cheap to pickle: the tagger is built lazily."""

    def __init__(self) -> None:
        self._tagger = None
        self.unaligned_chunks = 0  # chunks MeCab could not reproduce; kept whole (counted, not lost)

    def __getstate__(self) -> dict:
        return {"unaligned_chunks": 0, "_tagger": None}

    def _get_tagger(self):
        if self._tagger is None:
            import mecab_ko

            self._tagger = mecab_ko.Tagger(_MECAB_ARGS)
        return self._tagger

    def mark(self, text: str) -> str:
        """`text` with MARKER between morpheme segments (the fast path's input).

        Unambiguous only when MARKER is not in `text`; callers check and use `segments` otherwise.
        """
        if len(text) <= CHUNK_CHARS and not _SPECIAL_RUN.search(text):
            return self._chunk_marked(text)
        return MARKER.join(self._chunk_marked(c) if analyse else c for c, analyse in _chunks(text))

    def segments(self, text: str) -> list[str]:
        """Morpheme segments of `text`; `"".join(result) == text` always holds."""
        if not text:
            return []
        if MARKER not in text:
            return self.mark(text).split(MARKER)
        out: list[str] = []
        for chunk, analyse in _chunks(text):
            if not analyse:
                out.append(chunk)
            elif MARKER in chunk:
                out.extend(self._segments_by_node(chunk))
            else:
                out.extend(self._chunk_marked(chunk).split(MARKER))
        return out

    def _chunk_marked(self, chunk: str) -> str:
        if not chunk:
            return chunk
        marked = self._get_tagger().parse(chunk)
        if marked.endswith(MARKER):
            marked = marked[:-1]
        if len(marked) - marked.count(MARKER) == len(chunk) and marked.replace(MARKER, "") == chunk:
            return marked
        plain = marked.replace(MARKER, "")
        # MeCab drops whitespace after the last morpheme; it belongs to the last segment.
        if len(plain) < len(chunk) and chunk.startswith(plain) and chunk[len(plain):].isspace():
            return marked + chunk[len(plain):]
        self.unaligned_chunks += 1
        return chunk

    def _segments_by_node(self, chunk: str) -> list[str]:
        """Slow path for text that contains MARKER itself: walk MeCab's nodes and align by length."""
        import mecab_ko

        tagger = self._get_tagger()
        out: list[str] = []
        pos = 0
        data = chunk.encode("utf-8")
        node = tagger.parseToNode(chunk)
        while node is not None:
            if node.stat not in (mecab_ko.MECAB_BOS_NODE, mecab_ko.MECAB_EOS_NODE):
                end = pos + node.rlength
                out.append(data[pos:end].decode("utf-8", errors="strict"))
                pos = end
            node = node.next
        if pos < len(data):
            tail = data[pos:].decode("utf-8")
            if out and tail.isspace():
                out[-1] += tail
            else:
                out.append(tail)
        if "".join(out) != chunk:
            self.unaligned_chunks += 1
            return [chunk]
        return out


def _chunks(text: str):
    """(chunk, analyse) pairs covering `text`; analyse=False chunks are segments as they are."""
    pos = 0
    for m in _SPECIAL_RUN.finditer(text):
        yield from _sized(text[pos:m.start()])
        run = m.group()
        if run == "\x00":
            yield run, False
        elif m.group(1) is not None:  # one repeated character
            for i in range(0, len(run), MAX_RUN):
                yield run[i:i + MAX_RUN], False
        else:
            for i in range(0, len(run), MAX_WORD_CHARS):
                yield run[i:i + MAX_WORD_CHARS], True
        pos = m.end()
    yield from _sized(text[pos:])


def _sized(part: str):
    """Cut at most CHUNK_CHARS at a time, after a newline (or a space) when there is one."""
    pos = 0
    while len(part) - pos > CHUNK_CHARS:
        end = pos + CHUNK_CHARS
        cut = part.rfind("\n", pos, end)
        if cut <= pos:
            cut = part.rfind(" ", pos, end)
        cut = cut + 1 if cut > pos else end
        yield part[pos:cut], True
        pos = cut
    if pos < len(part):
        yield part[pos:], True


def boundaries(segments: list[str]) -> list[int]:
    """Character offsets of morpheme boundaries inside words (not where whitespace starts a segment)."""
    out = []
    pos = 0
    for seg in segments[:-1]:
        pos += len(seg)
        out.append(pos)
    return [p for p, seg in zip(out, segments[1:]) if seg and not seg[0].isspace()]
