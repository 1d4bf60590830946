"""Serializer throughput and memory: hyperclova's preprocess versus a Megatron-style baseline.

The baseline is Megatron-LM's tools/preprocess_data.py pattern: `multiprocessing.Pool.imap` over
the input lines (chunksize 32), each worker JSON-decodes and encodes ONE document with HF
`tokenizers` (what Megatron's HuggingFace tokenizer runs; for morpheme-bbpe MeCab-ko runs on every
document first: the reference encoding), the main process feeds every document to megatron-core's
`IndexedDatasetBuilder.add_document`. Ours streams ~1 MB blocks to the workers, which batch-encode
with the tokenizer's bulk engine (tiktoken, verified id-identical at training time) and, for
morpheme-bbpe, the morpheme cache (hyperclova/tokenizer/morpheme_cache.py). `ours_mecab` is ours
with MeCab-ko on every document (today's pipeline without the cache); `before` is the serializer of
an older commit (`--before`, default f423764: before the one reader and the morpheme cache), run
from a `git archive` of it. Same corpus, same tokenizer
directory, same worker count; all outputs are checked byte-identical. Each run is a fresh
subprocess whose whole process tree is sampled for peak memory (PSS, so pages shared after fork
count once); its wall time from start to exit (imports included: what a user waits for) is
reported beside the timed section. Implementations alternate, round after round, so machine noise
hits all alike.

    python bench/bench_serializer.py --type bbpe --mb 40 --workers 2 --rounds 2
    python bench/bench_serializer.py --type morpheme-bbpe --mb 100 --workers 2 --rounds 1 \
        --impls baseline,before,ours --no-scale-check     # the goal row
    python bench/bench_serializer.py --type morpheme-bbpe --mb 100 --breakdown 30 --no-scale-check
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OURS = ("ours", "ours_mecab", "before")  # preprocess() of this tree or of the --before tree


# --- the Megatron-style baseline (runs in the child process) -------------------------------------

_TOK = None


def _baseline_init(tokenizer_dir: str, engine: str) -> None:
    global _TOK
    from hyperclova.tokenizer import load_tokenizer

    # engine "hf": the reference (MeCab-ko on every document); "auto": our bulk engine and cache
    _TOK = load_tokenizer(tokenizer_dir, engine=engine, segment_cache=engine != "hf")


def _baseline_encode(line: str):
    text = json.loads(line)["text"]
    ids = _TOK.encode(text)  # one document at a time, as Megatron's Encoder.encode
    ids.append(_TOK.eod_id)
    return ids, len(line.encode("utf-8"))


def run_baseline(corpus: str, prefix: str, tokenizer_dir: str, workers: int, engine: str = "hf") -> dict:
    """Megatron encodes with the HF tokenizers library (its HuggingFace tokenizer wrapper);
    engine="auto" gives the same pipeline our fast engine, to separate engine and pipeline gains."""
    import multiprocessing as mp

    from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder

    from hyperclova.tokenizer import load_tokenizer

    vocab = load_tokenizer(tokenizer_dir).vocab_size
    start = time.perf_counter()
    docs = nbytes = 0
    with open(corpus, encoding="utf-8") as fin, mp.get_context("fork").Pool(
            workers, initializer=_baseline_init, initargs=(tokenizer_dir, engine)) as pool:
        builder = IndexedDatasetBuilder(prefix + ".bin", dtype=DType.optimal_dtype(vocab))
        for ids, n in pool.imap(_baseline_encode, fin, 32):
            builder.add_document(ids, [len(ids)])
            docs += 1
            nbytes += n
        builder.finalize(prefix + ".idx")
    return {"seconds": time.perf_counter() - start, "docs": docs, "bytes": nbytes}


def run_ours(corpus: str, prefix: str, tokenizer_dir: str, workers: int, segment_cache: bool = True) -> dict:
    from hyperclova.data.serialize import preprocess

    if not segment_cache:  # the serializer as it was before the morpheme cache: the workers fork
        import functools  # from this process and load their tokenizer through this name

        import hyperclova.tokenizer as tokenizer_pkg

        tokenizer_pkg.load_tokenizer = functools.partial(tokenizer_pkg.load_tokenizer, segment_cache=False)

    start = time.perf_counter()
    stats = preprocess([corpus], prefix, tokenizer_dir, workers=workers, append_eod=True, progress=False)
    return {"seconds": time.perf_counter() - start, "docs": stats.documents_read, "bytes": stats.bytes_read}


def child_main(args) -> None:
    import warnings

    warnings.simplefilter("ignore")
    if args.impl not in OURS:  # Megatron's tool imports megatron-core (and torch); ours needs neither
        import megatron.core.datasets.indexed_dataset  # noqa: F401  (one-off import, not timed)

    before = os.times()
    if args.impl in OURS:
        result = run_ours(args.corpus, args.prefix, args.tokenizer, args.workers, args.impl != "ours_mecab")
    else:
        engine = "auto" if args.impl == "baseline_fast" else "hf"
        result = run_baseline(args.corpus, args.prefix, args.tokenizer, args.workers, engine)
    after = os.times()
    # CPU seconds of this process and its (joined) workers: contention on a shared machine
    # stretches wall time far more than it changes the work done.
    result["cpu_seconds"] = sum(after[:4]) - sum(before[:4])
    print(json.dumps(result))


# --- where a worker's time goes ---------------------------------------------------------------------


def breakdown(corpus: Path, tokenizer: Path, mb: float) -> dict[str, dict[str, float]]:
    """CPU seconds per component of a serializer worker encoding the first `mb` MB of `corpus` in
    the serializer's blocks, one fresh process state per pipeline (cold start included): MeCab-ko on
    every document (before the morpheme cache) and the morpheme cache (after)."""
    import functools

    from hyperclova.data import records
    from hyperclova.data.reader import DEFAULT_BLOCK_BYTES, Range, expand_inputs, read_blocks
    from hyperclova.tokenizer import load_tokenizer
    from hyperclova.tokenizer import morpheme_cache as mc

    spent: dict[str, float] = {}

    def patch(owner, name, label, undo):
        real = getattr(owner, name)

        @functools.wraps(real)
        def timed(*args, **kwargs):
            start = time.process_time()
            try:
                return real(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.process_time() - start
        setattr(owner, name, timed)
        undo.append((owner, name, real))

    out = {}
    for label, cache in (("before: MeCab-ko on every document", False), ("after: morpheme cache", True)):
        tok = load_tokenizer(str(tokenizer), threads=1, segment_cache=cache)
        encoder = records.BlockEncoder(tok, ("text",), True, "uint16")
        undo: list = []
        patch(records, "parse_block", "read: decode + JSON + checks", undo)
        patch(records, "pack", "pack into token arrays", undo)
        if cache:
            for owner, name, what in ((mc, "analyse_many", "eojeol analyses (MeCab lattice + DP)"),
                                      (tok._cache, "_bounds", "bounds of rare eojeols"),
                                      (tok._cache, "_solve", "context solves"),
                                      (tok._cache, "_window_segments", "MeCab-ko windows"),
                                      (tok._splitter, "_chunk_marked", "MeCab-ko whole chunks"),
                                      (tok._cache, "encode_marked", "BPE of new segmentations")):
                patch(owner, name, what, undo)
        else:
            patch(tok._splitter, "mark", "MeCab-ko", undo)
            patch(tok._engine, "encode_batch", "BPE engine", undo)
        spent.clear()
        nbytes = 0
        start = time.process_time()
        try:
            for block in read_blocks([Range(f) for f in expand_inputs([str(corpus)])], DEFAULT_BLOCK_BYTES):
                encoder(block)
                nbytes += len(block.data)
                if nbytes >= mb * 1e6:
                    break
        finally:
            for owner, name, real in reversed(undo):
                setattr(owner, name, real)
        row = dict(spent)
        row["total"] = time.process_time() - start
        row["lookups and glue" if cache else "Python glue"] = row["total"] - sum(spent.values())
        row["MB"] = nbytes / 1e6
        out[label] = row
    return out


def print_breakdown(rows: dict[str, dict[str, float]]) -> None:
    labels = list(rows)
    parts = [p for p in dict.fromkeys(k for r in rows.values() for k in r) if p not in ("total", "MB")]
    print(f"\n| component (CPU s per MB) | {' | '.join(labels)} |")
    print("|---|" + "---|" * len(labels))
    for part in parts:
        cells = [f"{r[part] / r['MB']:.3f} ({100 * r[part] / r['total']:.0f}%)" if part in r else "-"
                 for r in rows.values()]
        print(f"| {part} | {' | '.join(cells)} |")
    totals = [f"{r['total'] / r['MB']:.3f} = {r['MB'] / r['total']:.2f} MB/cpu-s" for r in rows.values()]
    print(f"| total | {' | '.join(totals)} |")


# --- the driver -----------------------------------------------------------------------------------


def tree_pss_kb(root: int) -> int:
    """Sum of PSS over `root` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += next(int(l.split()[1]) for l in f if l.startswith("Pss:"))
        except (OSError, StopIteration):
            pass
    return total


def measure(impl: str, corpus: Path, prefix: Path, tokenizer: Path, workers: int,
            before_tree: Path | None = None) -> dict:
    cmd = [sys.executable, __file__, "_child", "--impl", impl, "--corpus", str(corpus),
           "--prefix", str(prefix), "--tokenizer", str(tokenizer), "--workers", str(workers)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(before_tree if impl == "before" else REPO)  # which hyperclova the child imports
    for old in prefix.parent.glob(prefix.name + "*"):  # an earlier run's shards (ours refuses to replace them)
        if old.is_file():
            old.unlink()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_pss_kb(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    process_seconds = time.perf_counter() - started
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{impl} failed:\n{err}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_pss_mb"] = peak[0] / 1024
    result["process_seconds"] = process_seconds
    result["process_mb_s"] = result["bytes"] / 1e6 / process_seconds
    result["mb_s"] = result["bytes"] / 1e6 / result["seconds"]
    result["docs_s"] = result["docs"] / result["seconds"]
    result["mb_per_cpu_s"] = result["bytes"] / 1e6 / result["cpu_seconds"]
    return result


def prepare(out: Path, mb: float, vocab: int, kind: str, tokenizer: str | None,
            scale_check: bool = True) -> tuple[Path, Path, Path]:
    from hyperclova.corpus.synthetic import generate_corpus

    out.mkdir(parents=True, exist_ok=True)
    docs = int(mb * 1e6 / 505)  # the synthetic generator averages about 505 bytes per document
    corpus, corpus4 = out / f"corpus_{mb:g}mb.jsonl", out / f"corpus_{4 * mb:g}mb.jsonl"
    for path, n, seed in ((corpus, docs, 1), (corpus4, 4 * docs, 2))[:2 if scale_check else 1]:
        if not path.exists():
            generate_corpus(path, n_docs=n, seed=seed)
    tok = Path(tokenizer) if tokenizer else out / f"tok_{kind}_{vocab}"
    if not tok.exists():
        from hyperclova.tokenizer import train_tokenizer

        train_tokenizer([str(corpus)], str(tok), type=kind, vocab_size=vocab, show_progress=False,
                        sample_bytes=20_000_000, workers=2)
    return corpus, corpus4, tok


def same_files(a: Path, b: Path) -> bool:
    return all((Path(f"{a}{s}").read_bytes() == Path(f"{b}{s}").read_bytes()) for s in (".bin", ".idx"))


def driver(args) -> None:
    out = Path(args.out)
    corpus, corpus4, tok = prepare(out, args.mb, args.vocab, args.type, args.tokenizer, args.scale_check)
    if args.breakdown:
        print(f"where one worker's time goes, first {args.breakdown:g} MB of {corpus} (one process, CPU time):")
        print_breakdown(breakdown(corpus, tok, args.breakdown))
        return
    from hyperclova.tokenizer import load_tokenizer

    vocab = load_tokenizer(str(tok)).vocab_size
    print(f"corpus {corpus} ({corpus.stat().st_size / 1e6:.1f} MB), tokenizer {tok} (vocab {vocab}), "
          f"workers {args.workers}, cores {os.cpu_count()}")
    impls = args.impls.split(",")
    before_tree = None
    if "before" in impls:
        from before_after import checkout

        before_tree = checkout(args.before, out / f"tree_{args.before}")
    rows: dict[str, list] = {impl: [] for impl in impls}
    for r in range(args.rounds):
        for impl in impls:
            res = measure(impl, corpus, out / f"{impl}_r{r}", tok, args.workers, before_tree)
            rows[impl].append(res)
            print(f"round {r} {impl:13s} {res['seconds']:6.2f} s  {res['docs_s']:9,.0f} docs/s  "
                  f"{res['mb_s']:5.2f} MB/s  {res['mb_per_cpu_s']:5.2f} MB/cpu-s  whole process "
                  f"{res['process_seconds']:6.2f} s = {res['process_mb_s']:5.2f} MB/s  "
                  f"peak PSS {res['peak_pss_mb']:6.0f} MB", flush=True)
        ours_prefix = out / f"ours_r{r}_text_document"
        for impl in impls:
            if impl != "ours":
                prefix = out / (f"{impl}_r{r}_text_document" if impl in OURS else f"{impl}_r{r}")
                assert same_files(prefix, ours_prefix), f"{impl} and ours outputs differ"
    big = None
    if args.scale_check:
        big = measure("ours", corpus4, out / "ours_4x", tok, args.workers)
        print(f"4x input ours {big['seconds']:6.2f} s  {big['docs_s']:9,.0f} docs/s  {big['mb_s']:5.2f} MB/s  "
              f"{big['mb_per_cpu_s']:5.2f} MB/cpu-s  peak PSS {big['peak_pss_mb']:6.0f} MB")
    med = {k: statistics.median(x["mb_s"] for x in v) for k, v in rows.items()}
    print(f"\n{' and '.join(impls)} outputs byte-identical in every round")
    for other in [i for i in impls if i != "ours"]:
        for key, label in (("mb_s", "MB/s"), ("mb_per_cpu_s", "MB per CPU-second"),
                           ("process_mb_s", "whole-process MB/s")):
            r = [o[key] / b[key] for b, o in zip(rows[other], rows["ours"])]
            print(f"ours / {other}, {label}: {', '.join(f'{x:.2f}x' for x in r)}; "
                  f"median {statistics.median(r):.2f}x")
    if "baseline_fast" in rows:
        fast = [o["mb_per_cpu_s"] / b["mb_per_cpu_s"] for b, o in zip(rows["baseline_fast"], rows["ours"])]
        print(f"MB per CPU-second, ours / baseline with our fast engine: {', '.join(f'{x:.2f}x' for x in fast)}; "
              f"median {statistics.median(fast):.2f}x; wall MB/s median baseline_fast "
              f"{statistics.median(x['mb_s'] for x in rows['baseline_fast']):.2f}")
    if "baseline" in rows:
        ratios = [o["mb_s"] / b["mb_s"] for b, o in zip(rows["baseline"], rows["ours"])]
        print(f"median MB/s: baseline {med['baseline']:.2f}, ours {med['ours']:.2f}; "
              f"speedup per round {', '.join(f'{x:.2f}x' for x in ratios)}; median {statistics.median(ratios):.2f}x")
        cpu = [o["mb_per_cpu_s"] / b["mb_per_cpu_s"] for b, o in zip(rows["baseline"], rows["ours"])]
        print(f"MB per CPU-second (all processes), ours / baseline per round: "
              f"{', '.join(f'{x:.2f}x' for x in cpu)}; median {statistics.median(cpu):.2f}x")
    mem1 = statistics.median(x["peak_pss_mb"] for x in rows["ours"])
    print(f"ours peak PSS: {mem1:.0f} MB at 1x ({corpus.stat().st_size / 1e6:.0f} MB input)"
          + (f", {big['peak_pss_mb']:.0f} MB at 4x ({corpus4.stat().st_size / 1e6:.0f} MB input)" if big else ""))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        p = argparse.ArgumentParser()
        for name in ("--impl", "--corpus", "--prefix", "--tokenizer"):
            p.add_argument(name, required=True)
        p.add_argument("--workers", type=int, required=True)
        child_main(p.parse_args(sys.argv[2:]))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=float, default=40, help="corpus size for the 1x runs")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--impls", default="baseline,ours",
                   help="add baseline_fast: the Megatron pattern with our fast engine (engine vs "
                        "pipeline); ours_mecab: ours with MeCab-ko on every document; before: the "
                        "serializer of the --before commit")
    p.add_argument("--before", default="f423764", help="git revision the 'before' implementation runs")
    p.add_argument("--vocab", type=int, default=32000, help="vocabulary of the tokenizer trained for the run")
    p.add_argument("--type", default="bbpe", help="tokenizer type to train: bbpe, morpheme-bbpe, ...")
    p.add_argument("--tokenizer", help="use this tokenizer directory instead of training one")
    p.add_argument("--out", default="bench_out/serializer", help="corpus, tokenizer and shards go here")
    p.add_argument("--scale-check", action=argparse.BooleanOptionalAction, default=True,
                   help="also run ours on a 4x corpus to compare peak memory")
    p.add_argument("--breakdown", type=float, default=0, metavar="MB",
                   help="instead: where one worker's CPU time goes over the first MB of the corpus, "
                        "MeCab-ko on every document vs the morpheme cache (morpheme-bbpe)")
    driver(p.parse_args())


if __name__ == "__main__":
    main()
