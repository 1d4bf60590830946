"""Tokenizer comparison (docs/tokenizers.md): fertility, morpheme-boundary crossing, unknown rate, and the
vocabulary overlap between tokenizers trained on different sample ratios."""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Sequence

from hyperclova.errors import UserError

from hyperclova.tokenizer.load import Tokenizer
from hyperclova.tokenizer.morphemes import MorphemeSplitter, boundaries


@dataclass
class TokenizerStats:
    type: str
    vocab_size: int
    chars: int
    words: int
    tokens: int
    tokens_per_char: float
    tokens_per_word: float
    crossing_tokens: int        # tokens whose bytes span a morpheme boundary inside a word
    crossing_share: float
    unknown_tokens: int
    unknown_rate: float         # unknown tokens / tokens

    def as_dict(self) -> dict:
        return asdict(self)


def token_spans(tok: Tokenizer, text: str, ids: list[int]) -> list[tuple[int, int]]:
    """Byte span of each token in `text.encode()`. An <|unk|> covers one character of the text."""
    data = text.encode()
    spans = []
    pos = 0
    for i in ids:
        if i == tok.unk_id and tok.type == "char-bpe":
            lead = data[pos]
            n = 1 if lead < 0x80 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
        else:
            n = len(tok.id_to_bytes(i))
        spans.append((pos, pos + n))
        pos += n
    if pos != len(data):
        raise ValueError(f"{tok.type}: token bytes cover {pos} of {len(data)} bytes")
    return spans


def evaluate(tok: Tokenizer, texts: list[str], splitter: MorphemeSplitter | None = None) -> TokenizerStats:
    splitter = splitter or MorphemeSplitter()
    chars = words = tokens = crossing = unknown = 0
    for text, ids in zip(texts, tok.encode_batch(texts)):
        chars += len(text)
        words += len(text.split())
        tokens += len(ids)
        unknown += sum(1 for i in ids if i == tok.unk_id)
        cuts = sorted(len(text[:c].encode()) for c in boundaries(splitter.segments(text)))
        crossing += _count_crossing(token_spans(tok, text, ids), cuts)
    return TokenizerStats(
        type=tok.type, vocab_size=tok.vocab_size, chars=chars, words=words, tokens=tokens,
        tokens_per_char=tokens / max(chars, 1), tokens_per_word=tokens / max(words, 1),
        crossing_tokens=crossing, crossing_share=crossing / max(tokens, 1),
        unknown_tokens=unknown, unknown_rate=unknown / max(tokens, 1),
    )


def _count_crossing(spans: list[tuple[int, int]], cuts: list[int]) -> int:
    # Both lists are sorted by position: one merge-like pass.
    n, j = 0, 0
    for start, end in spans:
        while j < len(cuts) and cuts[j] <= start:
            j += 1
        if j < len(cuts) and cuts[j] < end:
            n += 1
    return n


def vocab_overlap(a: Tokenizer, b: Tokenizer) -> float:
    """Share of `b`'s learned (non-special) vocabulary that `a` also has."""
    va, vb = _learned_vocab(a), _learned_vocab(b)
    return len(va & vb) / max(len(vb), 1)


def _learned_vocab(tok: Tokenizer) -> set[bytes]:
    n_special = len(tok.special_tokens)
    return {tok.id_to_bytes(i) for i in range(n_special, tok.vocab_size)}


def markdown_table(rows: list[TokenizerStats]) -> str:
    out = ["| type | vocab | tokens/char | tokens/word | crossing morpheme boundary | unknown |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r.type} | {r.vocab_size} | {r.tokens_per_char:.3f} | {r.tokens_per_word:.2f} "
                   f"| {100 * r.crossing_share:.1f}% | {100 * r.unknown_rate:.2f}% |")
    return "\n".join(out)


def plot_overlap(curves: dict[str, list[tuple[float, float]]], path: str) -> None:
    """Vocabulary overlap with the full-data tokenizer against sample ratio, one line per type."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    for kind, points in curves.items():
        xs, ys = zip(*sorted(points))
        ax.plot(xs, [100 * y for y in ys], marker="o", label=kind)
    ax.set_xscale("log")
    ax.set_xlabel("sample ratio of the training corpus")
    ax.set_ylabel("vocabulary overlap with ratio 1 (%)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_report(train_files: list[str], eval_files: list[str], out_dir: str, types: list[str],
               vocab_size: int, ratios: list[float], overlap_types: list[str], png: str | None,
               json_keys: Sequence[str] = ("text",), eval_docs: int = 2000, workers: int = 1, seed: int = 0,
               log=print, input_format: str = "auto", strict: bool = False, overwrite: bool = False) -> dict:
    """Train every type on `train_files`, evaluate on `eval_files`, and measure vocabulary overlap
    against sample ratio. Writes tokenizers, report.json and report.md under `out_dir`, which must
    be empty unless `overwrite`."""
    import json
    from pathlib import Path

    from hyperclova.data.reader import ReadStats, iter_records
    from hyperclova.paths import make_dir
    from hyperclova.tokenizer.train import train_tokenizer

    out = Path(out_dir)
    if not overwrite and out.is_dir() and any(out.iterdir()):
        raise UserError(f"--output {out_dir} is not empty (an earlier report?); pass --overwrite to replace it")
    make_dir(out, "--output")
    read = ReadStats()
    records = iter_records(eval_files, json_keys, input_format, strict, read)
    texts = list(itertools.islice((t for rec in records for t in rec.texts), eval_docs))
    log(read.summary())
    splitter = MorphemeSplitter()

    def train(kind: str, ratio: float):
        name = f"{kind}" if ratio == 1.0 else f"{kind}_r{ratio:g}"
        tok = train_tokenizer(train_files, str(out / name), type=kind, vocab_size=vocab_size,
                              json_keys=json_keys, sample_ratio=None if ratio == 1.0 else ratio,
                              workers=workers, seed=seed, show_progress=False, input_format=input_format,
                              strict=strict, overwrite=True)
        log(f"trained {name}: vocab {tok.vocab_size} in {tok.meta['training']['seconds']:.1f} s")
        return tok

    full = {kind: train(kind, 1.0) for kind in types}
    rows = [evaluate(full[kind], texts, splitter) for kind in types]
    curves: dict[str, list[tuple[float, float]]] = {}
    for kind in overlap_types:
        ref = full[kind] if kind in full else train(kind, 1.0)
        curves[kind] = [(1.0, 1.0)] + [(r, vocab_overlap(train(kind, r), ref))
                                        for r in ratios if r < 1.0]
    if png:
        plot_overlap(curves, png)
    report = {
        "train_files": train_files, "eval_files": eval_files, "eval_docs": len(texts),
        "vocab_size": vocab_size, "stats": [r.as_dict() for r in rows],
        "training_seconds": {k: t.meta["training"]["seconds"] for k, t in full.items()},
        "overlap": {k: sorted(v) for k, v in curves.items()}, "png": png,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    md = markdown_table(rows) + "\n\n" + overlap_table(curves) + "\n"
    (out / "report.md").write_text(md, encoding="utf-8")
    return report


def overlap_table(curves: dict[str, list[tuple[float, float]]]) -> str:
    ratios = sorted({r for points in curves.values() for r, _ in points})
    out = ["| type | " + " | ".join(f"r={r:g}" for r in ratios) + " |",
           "|---|" + "---|" * len(ratios)]
    for kind, points in curves.items():
        d = dict(points)
        out.append(f"| {kind} | " + " | ".join(f"{100 * d[r]:.1f}%" if r in d else "" for r in ratios)
                   + " |")
    return "\n".join(out)
