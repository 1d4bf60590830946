"""Serializer start-up: wall time to serialize a 3-document file, before and after, side by side.

    OMP_NUM_THREADS=1 python bench/bench_startup.py --before f423764 --rounds 5
    OMP_NUM_THREADS=1 python bench/bench_startup.py --before f423764 --rounds 3 --mb 20 --type bbpe --workers 2

What a user waits for: the whole `python tools/preprocess_data.py ...` process, interpreter start,
imports, tokenizer loading and worker start included. With `--mb N` it also serializes an N MB file
the same way, to show that steady-state throughput (MB/s, and MB per CPU-second of the whole
process tree) did not regress. The `before` tree comes from git (`--before`
REV) and runs in the same loop as this checkout, alternating, so machine load hits both alike. Also
prints a bare interpreter start (`python -c pass`) and which heavy modules each tree's serializer
loads.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from before_after import REPO, checkout, child_env  # noqa: E402

_IMPORTS = """
import json, sys
from hyperclova.data.serialize import preprocess
preprocess([sys.argv[1]], sys.argv[2], sys.argv[3], workers=1, progress=False)
print(json.dumps(sorted({"torch", "megatron", "tokenizers", "tiktoken", "mecab_ko"} & {m.split(".")[0] for m in sys.modules})))
"""


def serialize(tree: Path, corpus: Path, tok: Path, prefix: Path, workers: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process tree) of one tools/preprocess_data.py run."""
    cmd = [sys.executable, "tools/preprocess_data.py", "--input", str(corpus), "--output-prefix", str(prefix),
           "--tokenizer", str(tok), "--workers", str(workers), "--no-progress"]
    cpu0 = sum(os.times()[2:4])
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=tree, env=child_env(tree), capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if res.returncode:
        raise RuntimeError(f"{tree}: {res.stdout}\n{res.stderr}")
    return seconds, sum(os.times()[2:4]) - cpu0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", default="f423764", help="git revision of the 'before' tree (default: the last commit before the one reader)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--type", default="morpheme-bbpe", help="tokenizer type (the default is the paper's)")
    p.add_argument("--mb", type=float, default=0, help="also serialize a file of this size (throughput)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        before = checkout(args.before, tmp / "before")
        trees = {"before": before, "after": REPO}
        sys.path.insert(0, str(REPO))
        from hyperclova.corpus.synthetic import generate_corpus
        from hyperclova.tokenizer import train_tokenizer

        generate_corpus(tmp / "c.jsonl", n_docs=2000, seed=0)
        lines = (tmp / "c.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
        (tmp / "three.jsonl").write_text("".join(lines[:3]), encoding="utf-8")
        tok = tmp / "tok"
        train_tokenizer([str(tmp / "c.jsonl")], str(tok), type=args.type, vocab_size=2000, show_progress=False)
        for name, tree in trees.items():
            mods = subprocess.run([sys.executable, "-c", _IMPORTS, str(tmp / "three.jsonl"), str(tmp / f"m_{name}"),
                                   str(tok)], env=child_env(tree), cwd=tmp, capture_output=True, text=True,
                                  check=True)
            print(f"{name}: serializing loads {mods.stdout.strip()}")
        bare = []
        times: dict = {(n, w): [] for n in trees for w in args.workers}
        for r in range(args.rounds):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            bare.append(time.perf_counter() - t0)
            for w in args.workers:
                for name, tree in trees.items():
                    times[name, w].append(serialize(tree, tmp / "three.jsonl", tok, tmp / f"o_{name}_{w}_{r}", w)[0])
            print(f"round {r}: " + ", ".join(f"{n} w{w} {v[-1]:.2f} s" for (n, w), v in times.items()), flush=True)
        print(f"\nbare interpreter start (python -c pass): median {statistics.median(bare):.2f} s\n")
        print("| workers | before: median s (rounds) | after: median s (rounds) | before / after |")
        print("|---|---|---|---|")
        for w in args.workers:
            b, a = times["before", w], times["after", w]
            print(f"| {w} | {statistics.median(b):.2f} ({', '.join(f'{x:.2f}' for x in b)}) | "
                  f"{statistics.median(a):.2f} ({', '.join(f'{x:.2f}' for x in a)}) | "
                  f"{statistics.median(x / y for x, y in zip(b, a)):.2f}x |")
        print(json.dumps({f"{n}_w{w}": statistics.median(v) for (n, w), v in times.items()}))
        if args.mb:
            big = tmp / "big.jsonl"
            generate_corpus(big, n_docs=int(args.mb * 1e6 / 505), seed=1)
            mb = big.stat().st_size / 1e6
            w = max(args.workers)
            rows: dict = {n: [] for n in trees}
            for r in range(args.rounds):
                for name, tree in trees.items():
                    rows[name].append(serialize(tree, big, tok, tmp / f"big_{name}_{r}", w))
            print(f"\n{mb:.1f} MB, {w} workers, whole process (start-up included):\n")
            print("| tree | MB/s per round | median MB/s | median MB per CPU-second |")
            print("|---|---|---|---|")
            for name, v in rows.items():
                print(f"| {name} | {', '.join(f'{mb / s:.2f}' for s, _ in v)} | "
                      f"{statistics.median(mb / s for s, _ in v):.2f} | {statistics.median(mb / c for _, c in v):.2f} |")


if __name__ == "__main__":
    main()
