"""Tokenizer benchmarks (docs/tokenizers.md): encode throughput per core of every type and of MeCab-ko alone, where
morpheme-bbpe's time goes with and without the morpheme cache, and training time and peak memory
of every type at two sample sizes.

Everything runs on one core (OMP_NUM_THREADS=1, one encode thread). Throughput rounds alternate
between the engines so machine noise hits all alike; the table reports the best round of each and
ratios between numbers from the same run. The morpheme cache is measured warm (after one pass over
the same documents: a serializer worker is warm after its first blocks) and cold (a fresh
tokenizer's first pass), and on text whose eojeols never repeat (its worst case). Training runs
one fresh subprocess per (type, size) so peak RSS (the process plus its MeCab workers) is that
run's own.

    python bench/bench_tokenizer.py --docs 20000 --vocab-size 4096 --sizes 2000000 8000000 \
        --rounds 3 --out /tmp/bench_tokenizer.md
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HYPERCLOVA_TOKENIZER_THREADS", "1")
REPO = Path(__file__).resolve().parent.parent
TYPES = ["morpheme-bbpe", "bbpe", "char-bpe", "spm"]

_TRAIN_CHILD = r"""
import json, resource, sys, time
from hyperclova.tokenizer import train_tokenizer
files, out, kind, vocab, size, workers = json.loads(sys.argv[1])
t = time.perf_counter()
tok = train_tokenizer(files, out, type=kind, vocab_size=vocab, sample_bytes=size, workers=workers,
                      show_progress=False)
sec = time.perf_counter() - t
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"seconds": sec, "peak_mb": own, "worker_peak_mb": kids,
                  "bytes": tok.meta["training"]["bytes"], "vocab": tok.vocab_size}))
"""


def make_corpus(path: Path, docs: int, seed: int) -> None:
    from hyperclova.corpus.synthetic import generate_corpus

    generate_corpus(path, n_docs=docs, seed=seed)


def read_texts(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def unrepeated(texts: list[str], seed: int = 0) -> list[str]:
    """The same documents with a random Hangul syllable glued to every eojeol: nothing repeats."""
    import random

    rng = random.Random(seed)
    return [" ".join(w + chr(0xAC00 + rng.randrange(11172)) for w in t.split(" ")) for t in texts]


def bench_encode(tok_dirs: dict[str, str], texts: list[str], rounds: int) -> dict[str, float]:
    """Best chars/s per engine over `rounds` alternating rounds."""
    import mecab_ko

    from hyperclova.tokenizer import load_tokenizer
    from hyperclova.tokenizer.morphemes import MorphemeSplitter

    chars = sum(map(len, texts))
    wakati = mecab_ko.Tagger("-Owakati")
    splitter = MorphemeSplitter()
    runs = {
        "MeCab-ko alone (-Owakati)": lambda: [wakati.parse(t) for t in texts],
        "MeCab-ko segmentation (ours, %M + marker)": lambda: [splitter.mark(t) for t in texts],
    }
    for kind, d in tok_dirs.items():
        tok = load_tokenizer(d, segment_cache=False)
        label = "MeCab on every text, " if kind == "morpheme-bbpe" else ""
        runs[f"{kind} encode_batch ({label}{tok.engine_name})"] = (lambda tok=tok: tok.encode_batch(texts))
        if kind == "morpheme-bbpe":
            warm = load_tokenizer(d)
            warm.encode_batch(texts)
            runs[f"{kind} encode_batch (morpheme cache warm, {warm.engine_name})"] = (
                lambda warm=warm: warm.encode_batch(texts))
            runs[f"{kind} encode_batch (morpheme cache cold, {warm.engine_name})"] = (
                lambda d=d: load_tokenizer(d).encode_batch(texts))
        if kind in ("bbpe", "morpheme-bbpe"):
            ref = load_tokenizer(d, engine="hf", segment_cache=False)
            runs[f"{kind} encode_batch (HFEngine)"] = (lambda ref=ref: ref.encode_batch(texts))
            runs[f"{kind} encode one doc at a time (HFEngine)"] = (
                lambda ref=ref: [ref.encode(t) for t in texts])
    best = {name: 0.0 for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            best[name] = max(best[name], chars / (time.perf_counter() - start))
    return best


def time_breakdown(tok_dir: str, texts: list[str]) -> dict[str, dict[str, float]]:
    """CPU seconds per component of morpheme-bbpe encoding: MeCab on every text (before), and the
    morpheme cache's first and second pass over the same texts, and over text that never repeats."""
    from hyperclova.tokenizer import load_tokenizer
    from hyperclova.tokenizer import morpheme_cache as mc
    from hyperclova.tokenizer.morphemes import MorphemeSplitter

    out: dict[str, dict[str, float]] = {}
    tok = load_tokenizer(tok_dir, segment_cache=False)
    splitter = MorphemeSplitter()
    t0 = time.process_time()
    marked = [splitter.mark(t) for t in texts]
    t1 = time.process_time()
    tok._engine.encode_batch(marked)
    t2 = time.process_time()
    tok.encode_batch(texts)
    t3 = time.process_time()
    out["MeCab on every text"] = {"MeCab-ko": t1 - t0, "BPE engine": t2 - t1,
                                  "Python glue": max(0.0, (t3 - t2) - (t2 - t0)), "total": t3 - t2}

    spent: dict[str, float] = {}

    def timed(owner, name, label):
        real = getattr(owner, name)

        def wrapper(*args, **kwargs):
            start = time.process_time()
            try:
                return real(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.process_time() - start
        return real, wrapper

    cached = load_tokenizer(tok_dir)
    patches = [(mc, "analyse_many", "eojeol analyses (MeCab lattice + DP)"),
               (mc.MorphemeCache, "_bounds", "bounds of rare eojeols"),
               (mc.MorphemeCache, "_solve", "context solves"),
               (mc.MorphemeCache, "_window_segments", "MeCab-ko windows"),
               (cached._splitter, "_chunk_marked", "MeCab-ko whole chunks"),
               (cached._cache, "encode_marked", "BPE engine (new segments)")]
    saved = []
    for owner, name, label in patches:
        real, wrapper = timed(owner, name, label)
        saved.append((owner, name, real))
        setattr(owner, name, wrapper)
    try:
        for label, batch in (("morpheme cache, first pass", texts), ("morpheme cache, second pass", texts),
                             ("morpheme cache, eojeols never repeat", unrepeated(texts))):
            spent.clear()
            start = time.process_time()
            cached.encode_batch(batch)
            total = time.process_time() - start
            row = dict(spent)
            row["lookups and glue"] = max(0.0, total - sum(spent.values()))
            row["total"] = total
            out[label] = row
    finally:
        for owner, name, real in saved:
            setattr(owner, name, real)
    return out


def bench_train(corpus: Path, kind: str, vocab: int, size: int, workers: int, tmp: Path) -> dict:
    args = json.dumps([[str(corpus)], str(tmp / f"{kind}_{size}"), kind, vocab, size, workers])
    r = subprocess.run([sys.executable, "-c", _TRAIN_CHILD, args], capture_output=True, text=True,
                       cwd=REPO, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--docs", type=int, default=20000, help="synthetic training documents")
    p.add_argument("--eval-docs", type=int, default=3000)
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--sizes", type=int, nargs="+", default=[2_000_000, 8_000_000],
                   help="training sample sizes in bytes (--sample-bytes)")
    p.add_argument("--workers", type=int, default=2, help="MeCab processes while training")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", help="append a markdown section to this file")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        corpus, evalset = tmp / "train.jsonl", tmp / "eval.jsonl"
        make_corpus(corpus, a.docs, seed=1)
        make_corpus(evalset, a.eval_docs, seed=2)
        train = {(k, s): bench_train(corpus, k, a.vocab_size, s, a.workers, tmp)
                 for s in a.sizes for k in TYPES}
        dirs = {k: str(tmp / f"{k}_{a.sizes[-1]}") for k in TYPES}
        texts = read_texts(evalset)
        enc = bench_encode(dirs, texts, a.rounds)
        fresh = unrepeated(texts)
        for label, cache in (("MeCab on every text", False), ("morpheme cache cold", True)):
            enc[f"morpheme-bbpe encode_batch ({label}; eojeols never repeat)"] = _rate(
                dirs["morpheme-bbpe"], fresh, cache)
        breakdown = time_breakdown(dirs["morpheme-bbpe"], texts)
    md = render(a, train, enc, sum(map(len, texts)), breakdown,
                sum(len(t.encode("utf-8")) for t in texts))
    print(md)
    if a.out:
        with open(a.out, "a", encoding="utf-8") as f:
            f.write(md + "\n")


def _rate(tok_dir: str, texts: list[str], segment_cache: bool) -> float:
    from hyperclova.tokenizer import load_tokenizer

    tok = load_tokenizer(tok_dir, segment_cache=segment_cache)
    start = time.perf_counter()
    tok.encode_batch(texts)
    return sum(map(len, texts)) / (time.perf_counter() - start)


def render(a, train, enc, eval_chars: int, breakdown: dict, eval_bytes: int) -> str:
    cmd = "python bench/bench_tokenizer.py " + " ".join(sys.argv[1:])
    mecab = enc["MeCab-ko alone (-Owakati)"]
    lines = [f"### Tokenizer encode throughput, one core ({time.strftime('%Y-%m-%d')})", "",
             f"`OMP_NUM_THREADS=1 {cmd}`", "",
             f"{eval_chars:,} characters of synthetic Korean (hyperclova.corpus.synthetic, seed 2); "
             f"vocabulary {a.vocab_size}; best of {a.rounds} alternating rounds.", "",
             "| engine | chars/s per core | MB/s per core | vs MeCab-ko alone |", "|---|---|---|---|"]
    for name, cps in enc.items():
        mb_s = cps * eval_bytes / eval_chars / 1e6
        lines.append(f"| {name} | {cps:,.0f} | {mb_s:.2f} | {cps / mecab:.2f}x |")
    parts = sorted({k for row in breakdown.values() for k in row if k != "total"})
    lines += ["", "### Where morpheme-bbpe encoding spends its time (CPU seconds, same documents)", "",
              "| run | " + " | ".join(parts) + " | total |", "|---" * (len(parts) + 2) + "|"]
    for run, row in breakdown.items():
        lines.append(f"| {run} | " + " | ".join(f"{row.get(k, 0.0):.2f}" for k in parts)
                     + f" | {row['total']:.2f} |")
    lines += ["", f"### Tokenizer training time and peak memory (--workers {a.workers})", "",
              "| type | sample bytes | seconds | peak RSS main (MB) | peak RSS worker (MB) |",
              "|---|---|---|---|---|"]
    for (kind, size), r in train.items():
        lines.append(f"| {kind} | {r['bytes']:,} | {r['seconds']:.1f} | {r['peak_mb']:.0f} "
                     f"| {r['worker_peak_mb']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
