"""The cleaner before and after it moved onto the one reader: docs/s of the first pass (the stage
that reads), of the whole default recipe, and of reading alone; side by side, alternating.

    OMP_NUM_THREADS=1 python bench/bench_cleaner_reader.py --before f423764 --docs 20000 --rounds 3

Both trees clean the same synthetic noisy corpus with the default recipe (task_mb 1, one worker, so
CPU seconds are this process's); their cleaned shards are compared byte for byte.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from before_after import REPO, checkout, run_python  # noqa: E402

CHILD = r"""
import json, os, resource, sys, time
from hyperclova.corpus import pipeline

raw, out, recipe = sys.argv[1:4]
cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
times, cpus = {}, {}
for stage in pipeline.STAGES:
    t0, c0 = time.perf_counter(), cpu()
    report = pipeline.run([raw], out, recipe, "local", 1, stage=stage)
    times[stage], cpus[stage] = time.perf_counter() - t0, cpu() - c0
t0, c0 = time.perf_counter(), cpu()
try:  # reading alone: the one reader, or the cleaner's own reader before it
    from hyperclova.data.reader import iter_records
    n = sum(1 for _ in iter_records([raw]))
except ImportError:
    from hyperclova.corpus.jsonl import list_inputs, plan_tasks, read_task
    whole = os.path.getsize(raw) + 1
    n = sum(1 for t in plan_tasks(list_inputs([raw]), whole) for _, rec, _ in read_task(t) if rec is not None)
print(json.dumps({"times": times, "cpu": cpus, "docs": report["docs_in"], "kept": report["docs_kept"],
                  "read_s": time.perf_counter() - t0, "read_cpu": cpu() - c0, "read_docs": n}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", default="f423764", help="git revision of the 'before' tree (default: the last commit before the one reader)")
    p.add_argument("--docs", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        trees = {"before": checkout(args.before, tmp / "before"), "after": REPO}
        sys.path.insert(0, str(REPO))
        from hyperclova.corpus.recipe import DEFAULT_RECIPE
        from hyperclova.corpus.synthetic import generate_corpus

        raw = tmp / "raw.jsonl"
        generate_corpus(raw, n_docs=args.docs, seed=0, noise=1.0)
        recipe = tmp / "recipe.yaml"
        recipe.write_text(DEFAULT_RECIPE.read_text(encoding="utf-8").replace("task_mb: 32", "task_mb: 1"))
        rows: dict = {name: [] for name in trees}
        for r in range(args.rounds):
            for name, tree in trees.items():
                res = run_python(tree, CHILD, str(raw), str(tmp / f"{name}_{r}"), str(recipe), cwd=tmp)
                rows[name].append(res)
                print(f"round {r} {name}: process {res['times']['process']:.2f} s, all stages "
                      f"{sum(res['times'].values()):.2f} s, reading alone {res['read_s']:.2f} s", flush=True)
            shards = [sorted((tmp / f"{n}_{r}" / "data").glob("*.jsonl")) for n in trees]
            same = [a.read_bytes() for a in shards[0]] == [b.read_bytes() for b in shards[1]]
            print(f"round {r}: cleaned shards identical: {same}")
        docs = rows["after"][0]["docs"]
        print(f"\n{docs:,} documents in, {rows['after'][0]['kept']:,} kept (before: {rows['before'][0]['docs']:,}"
              f" in, {rows['before'][0]['kept']:,} kept)\n")
        print("| measure | before | after | after / before |")
        print("|---|---|---|---|")

        def line(label, f):
            b = statistics.median(f(x) for x in rows["before"])
            a = statistics.median(f(x) for x in rows["after"])
            print(f"| {label} | {b:,.0f} | {a:,.0f} | {a / b:.2f}x |")

        line("first pass (process stage), docs/s", lambda x: x["docs"] / x["times"]["process"])
        line("first pass, docs per CPU-second", lambda x: x["docs"] / x["cpu"]["process"])
        line("whole recipe (all stages), docs/s", lambda x: x["docs"] / sum(x["times"].values()))
        line("whole recipe, docs per CPU-second", lambda x: x["docs"] / sum(x["cpu"].values()))
        line("reading alone, docs/s", lambda x: x["read_docs"] / x["read_s"])
        line("reading alone, docs per CPU-second", lambda x: x["read_docs"] / x["read_cpu"])


if __name__ == "__main__":
    main()
