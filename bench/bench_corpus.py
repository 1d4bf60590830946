"""Corpus pipeline benchmarks: throughput of the default recipe, of MinHash alone, 1 -> 2 workers,
and peak memory of the global near-dup stage against the number of documents.

    OMP_NUM_THREADS=1 python bench/bench_corpus.py --docs 20000 --mem-docs 50000,100000,200000,400000

Prints a markdown report; paste it with the command into docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hyperclova.corpus import pipeline
from hyperclova.corpus.dedup import MinHashConfig, MinHasher, band_keys
from hyperclova.corpus.recipe import DEFAULT_RECIPE
from hyperclova.corpus.synthetic import generate_corpus

_MEM_CHILD = """
import re, sys, time
from pathlib import Path
from hyperclova.corpus.dedup import MinHashConfig, find_duplicates
# VmHWM (peak RSS of this process image); ru_maxrss would carry the parent's peak across exec.
hwm = lambda: int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
base = hwm()
d, n_tasks = Path(sys.argv[1]), int(sys.argv[2])
names = [f"{i:05d}" for i in range(n_tasks)]
t0 = time.perf_counter()
v, _, stats = find_duplicates([d / f"{n}.hash.npy" for n in names], [d / f"{n}.sig.npy" for n in names],
                              MinHashConfig(), True, [d / f"{n}.bands.npy" for n in names])
print(base, hwm(), time.perf_counter() - t0, stats["near_dup"])
"""


def _timed(fn, *args, **kw) -> float:
    t0 = time.perf_counter()
    fn(*args, **kw)
    return time.perf_counter() - t0


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (pool workers), user + system."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def bench_pipeline(raw: Path, work: Path, recipe: str, workers: int) -> dict:
    out = work / f"out_w{workers}"
    times = {}
    cpu0 = _cpu_seconds()
    for stage in pipeline.STAGES:
        times[stage] = _timed(pipeline.run, [str(raw)], out, recipe, "local", workers, stage=stage)
    report = json.loads((out / "report.json").read_text())
    return {"times": times, "cpu": _cpu_seconds() - cpu0, "report": report}


def bench_minhash(texts: list[str]) -> dict:
    hasher = MinHasher(MinHashConfig())
    cpu0 = time.process_time()
    t = _timed(lambda: [hasher.signature(x) for x in texts])
    cpu = time.process_time() - cpu0
    mb = sum(len(x.encode()) for x in texts) / 1e6
    return {"docs_s": len(texts) / t, "mb_s": mb / t, "docs_cpu_s": len(texts) / cpu, "mb_cpu_s": mb / cpu}


def bench_dedup_memory(n_docs: int, work: Path, n_tasks: int = 8, dup_rate: float = 0.02) -> dict:
    """Random signatures with planted duplicates, written as a pipeline's first pass would."""
    cfg = MinHashConfig()
    rng = np.random.default_rng(n_docs)
    d = work / f"mem_{n_docs}"
    d.mkdir()
    per = n_docs // n_tasks
    for t in range(n_tasks):
        sigs = rng.integers(0, 2**32, (per, cfg.num_perm), dtype=np.uint32)
        dups = rng.random(per) < dup_rate
        src = rng.integers(0, per, per)
        sigs[dups] = sigs[src[dups]]
        sigs[dups, :8] = rng.integers(0, 2**32, (int(dups.sum()), 8), dtype=np.uint32)  # near, not exact
        np.save(d / f"{t:05d}.hash.npy", rng.integers(0, 2**63, per, dtype=np.uint64))
        np.save(d / f"{t:05d}.sig.npy", sigs)
        np.save(d / f"{t:05d}.bands.npy", band_keys(sigs, cfg))
    res = subprocess.run([sys.executable, "-c", _MEM_CHILD, str(d), str(n_tasks)], capture_output=True,
                         text=True, check=True)
    base, peak, secs, near = res.stdout.split()
    return {"docs": per * n_tasks, "base_mb": int(base) / 1024, "peak_mb": int(peak) / 1024,
            "seconds": float(secs), "near_dup": int(near),
            "sig_mb": per * n_tasks * cfg.num_perm * 4 / 1e6}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--docs", type=int, default=20000)
    p.add_argument("--mem-docs", default="50000,100000,200000,400000")
    p.add_argument("--recipe", default=str(DEFAULT_RECIPE))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        raw = work / "raw.jsonl"
        gen = generate_corpus(raw, n_docs=args.docs, seed=0, noise=1.0)
        mb = gen["bytes"] / 1e6
        # Small tasks so that two workers have work to share.
        recipe = work / "recipe.yaml"
        recipe.write_text(Path(args.recipe).read_text(encoding="utf-8").replace("task_mb: 32", "task_mb: 1"))
        texts = [json.loads(line)["text"] for line in open(raw, encoding="utf-8")]
        print(f"corpus: {args.docs} docs, {mb:.1f} MB JSONL (synthetic, noise=1.0); "
              f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
        mh = bench_minhash(texts)
        print(f"MinHash signatures alone (char 5-grams, 128 perms), 1 process: {mh['docs_s']:,.0f} docs/s, "
              f"{mh['mb_s']:.2f} MB/s of text (wall); {mh['docs_cpu_s']:,.0f} docs and "
              f"{mh['mb_cpu_s']:.2f} MB per CPU second\n")
        runs = {w: bench_pipeline(raw, work, str(recipe), w) for w in (1, 2)}
        print("| workers | plan s | process s | dedup s | finalize s | total s | docs/s | MB/s | CPU s | docs per CPU s | MB per CPU s |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for w, r in runs.items():
            t = r["times"]
            total = sum(t.values())
            print(f"| {w} | {t['plan']:.2f} | {t['process']:.2f} | {t['dedup']:.2f} | {t['finalize']:.2f} | "
                  f"{total:.2f} | {args.docs / total:,.0f} | {mb / total:.2f} | {r['cpu']:.1f} | "
                  f"{args.docs / r['cpu']:,.0f} | {mb / r['cpu']:.2f} |")
        par = lambda r: r["times"]["process"] + r["times"]["finalize"]  # noqa: E731
        print(f"\nparallel stages (process + finalize) speed-up 1 -> 2 workers: {par(runs[1]) / par(runs[2]):.2f}x; "
              f"whole run: {sum(runs[1]['times'].values()) / sum(runs[2]['times'].values()):.2f}x")
        print(f"outputs identical: {runs[1]['report']['docs_kept'] == runs[2]['report']['docs_kept']}\n")
        print("| documents | signatures on disk MB | dedup peak RSS MB | of which imports MB | seconds | near dups |")
        print("|---|---|---|---|---|---|")
        for n in [int(x) for x in args.mem_docs.split(",") if x]:
            m = bench_dedup_memory(n, work)
            print(f"| {m['docs']:,} | {m['sig_mb']:.0f} | {m['peak_mb']:.0f} | {m['base_mb']:.0f} | "
                  f"{m['seconds']:.1f} | {m['near_dup']:,} |")


if __name__ == "__main__":
    main()
