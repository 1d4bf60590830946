"""The serializer as resumable tasks on Ray (a local cluster of 1, 2 and 4 workers): tasks per
second, and what the plan and the merge cost, on the same input. Every run's merged shard is
checked byte for byte against a one-process `preprocess` of the same input.

    OMP_NUM_THREADS=1 python bench/bench_serializer_tasks.py --mb 20 --task-mb 1 --workers 1 2 4

Ray's own start (`ray.init`) is timed apart: on a cluster it is paid once, not per run. "busy s" sums
the tasks' own encode times (from their markers); busy / encode wall is the parallelism achieved:
when it grows with the workers but tasks/s does not, the tasks are waiting for CPU, not for Ray.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hyperclova.corpus import executors  # noqa: E402
from hyperclova.corpus.synthetic import generate_corpus  # noqa: E402
from hyperclova.data.serialize import preprocess  # noqa: E402
from hyperclova.data.serialize_tasks import preprocess_tasks  # noqa: E402
from hyperclova.tokenizer import train_tokenizer  # noqa: E402


def _files(prefix: Path) -> dict:
    return {s: Path(f"{prefix}_text_document{s}").read_bytes() for s in (".bin", ".idx", ".meta.json")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=float, default=20, help="input size")
    p.add_argument("--task-mb", type=float, default=1.0)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--type", default="bbpe", help="tokenizer type (bbpe keeps encoding cheap, so task "
                                                   "overheads show)")
    args = p.parse_args()
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = tmp / "corpus.jsonl"
        generate_corpus(corpus, n_docs=int(args.mb * 1e6 / 505), seed=3)
        mb = corpus.stat().st_size / 1e6
        tok = tmp / "tok"
        train_tokenizer([str(corpus)], str(tok), type=args.type, vocab_size=8000, sample_bytes=4_000_000,
                        show_progress=False)
        cpu0, t0 = time.process_time(), time.perf_counter()
        preprocess([str(corpus)], str(tmp / "ref"), str(tok), workers=1, append_eod=True, progress=False)
        ref_s, ref_cpu = time.perf_counter() - t0, time.process_time() - cpu0
        reference = _files(tmp / "ref")
        # Peak memory of one task process: the local executor with 1 worker runs tasks in its process.
        subprocess.run([sys.executable, "-m", "hyperclova.cli.preprocess_data", "--input", str(corpus),
                        "--output-prefix", str(tmp / "mem"), "--tokenizer", str(tok), "--executor", "local",
                        "--workers", "1", "--task-mb", str(args.task_mb), "--append-eod"],
                       check=True, capture_output=True)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"input {mb:.1f} MB, tokenizer {args.type}; {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f}; one-process streaming run (1 worker, in-process): {ref_s:.2f} s "
              f"({mb / ref_s:.2f} MB/s), {mb / ref_cpu:.2f} MB per CPU-second; peak RSS of a task process "
              f"({args.task_mb:g} MB tasks): {peak_mb:.0f} MB\n")
        print("| Ray workers | ray.init s | tasks | plan s | encode s | tasks/s | MB/s | busy s | parallelism "
              "| merge s | merge MB/s | merge share | identical |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for w in args.workers:
            out = str(tmp / f"w{w}")
            t0 = time.perf_counter()
            ray.init(num_cpus=w, include_dashboard=False, log_to_driver=False)
            init_s = time.perf_counter() - t0
            try:
                with executors.session("ray", w):  # joins the runtime started above
                    common = dict(executor="ray", workers=w, append_eod=True, task_bytes=int(args.task_mb * 2**20))
                    t0 = time.perf_counter()
                    preprocess_tasks([str(corpus)], out, str(tok), stage="plan", **common)
                    t1 = time.perf_counter()
                    preprocess_tasks([], out, None, stage="encode", **common)
                    t2 = time.perf_counter()
                    markers = [json.loads(m.read_text()) for m in Path(f"{out}.tasks").glob("*.done")]
                    n_tasks, busy_s = len(markers), sum(m["seconds"] for m in markers)
                    preprocess_tasks([], out, None, stage="merge", **common)
                    t3 = time.perf_counter()
            finally:
                ray.shutdown()
            out_mb = sum(len(v) for v in _files(Path(out)).values()) / 1e6
            same = _files(Path(out)) == reference
            plan_s, enc_s, merge_s = t1 - t0, t2 - t1, t3 - t2
            print(f"| {w} | {init_s:.1f} | {n_tasks} | {plan_s:.2f} | {enc_s:.2f} | {n_tasks / enc_s:.2f} | "
                  f"{mb / enc_s:.2f} | {busy_s:.2f} | {busy_s / enc_s:.2f} | {merge_s:.2f} | {out_mb / merge_s:.0f} | "
                  f"{merge_s / (plan_s + enc_s + merge_s):.1%} | {'yes' if same else 'NO'} |", flush=True)
            assert same, f"{w} workers: merged shard differs from the one-process run"


if __name__ == "__main__":
    main()
