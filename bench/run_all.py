"""Run every benchmark with the arguments recorded in docs/benchmarks.md, one after another.

    make bench            # or: python bench/run_all.py [name ...]

Each prints a Markdown table; copy the figures (and the command) into docs/benchmarks.md.
Run on a quiet machine: every ratio is measured side by side within one process.
"""
import os
import subprocess
import sys
import time

# Exactly the commands recorded in docs/benchmarks.md, one entry per table there.
BENCHES = {
    "model": ["bench/bench_model.py", "--threads", "2", "--rounds", "5", "--steps", "3"],
    "model-compile": ["bench/bench_model.py", "--threads", "2", "--rounds", "5", "--steps", "3",
                      "--compile"],
    "serializer-bbpe": ["bench/bench_serializer.py", "--type", "bbpe", "--mb", "40", "--workers", "2",
                        "--rounds", "5"],
    "serializer-engine": ["bench/bench_serializer.py", "--type", "bbpe", "--mb", "40", "--workers", "2",
                          "--rounds", "3", "--impls", "baseline,baseline_fast,ours"],
    "serializer-morpheme": ["bench/bench_serializer.py", "--type", "morpheme-bbpe", "--mb", "100",
                            "--workers", "2", "--rounds", "2", "--impls", "baseline,before,ours",
                            "--no-scale-check"],
    "serializer-morpheme-breakdown": ["bench/bench_serializer.py", "--type", "morpheme-bbpe", "--mb", "100",
                                      "--no-scale-check", "--breakdown", "30"],
    "tokenizer": ["bench/bench_tokenizer.py", "--docs", "20000", "--eval-docs", "3000", "--vocab-size",
                  "4096", "--sizes", "2000000", "8000000", "--rounds", "5"],
    "tokenizer-rerun": ["bench/bench_tokenizer.py", "--docs", "20000", "--eval-docs", "1000",
                        "--vocab-size", "4096", "--sizes", "2000000", "--rounds", "8"],
    "parallel-layouts": ["bench/bench_parallel.py", "layouts"],
    "parallel-bubble": ["bench/bench_parallel.py", "bubble"],
    "corpus": ["bench/bench_corpus.py", "--docs", "20000", "--mem-docs",
               "50000,100000,200000,400000,800000"],
    "launch": ["bench/bench_launch.py", "--rounds", "3"],
    "convert": ["bench/bench_convert.py", "--preset", "350m"],
    "serializer-startup": ["bench/bench_startup.py", "--before", "f423764", "--rounds", "5"],
    "serializer-startup-20mb": ["bench/bench_startup.py", "--before", "f423764", "--rounds", "3", "--mb", "20", "--type",
                                "bbpe", "--workers", "2"],
    "serializer-tasks-bbpe": ["bench/bench_serializer_tasks.py", "--mb", "20", "--task-mb", "1", "--workers",
                              "1", "2", "4"],
    "serializer-tasks-morpheme": ["bench/bench_serializer_tasks.py", "--type", "morpheme-bbpe", "--mb", "4",
                                  "--task-mb", "0.5", "--workers", "1", "2"],
    "cleaner-reader": ["bench/bench_cleaner_reader.py", "--before", "f423764", "--docs", "20000", "--rounds", "5"],
    "checkpoint": ["bench/bench_checkpoint.py", "--preset", "350m", "--rounds", "3"],
    "engine": ["bench/bench_engine.py", "--before", "2a49e25", "--rounds", "5", "--steps", "3"],
    "loss": ["bench/bench_loss.py"],
    "tune": ["bench/bench_tune.py", "--preset", "137m", "--threads", "2", "--rounds", "2",
             "--steps", "3"],
    "serve-tiny": ["bench/bench_serve.py", "--model", "tiny", "--clients", "1", "4", "16", "64"],
    "serve-wide": ["bench/bench_serve.py", "--model", "wide", "--clients", "1", "4", "16", "64"],
    "eval-tiny": ["bench/bench_eval.py", "--model", "tiny", "--examples", "64", "--rounds", "3"],
    "eval-137m": ["bench/bench_eval.py", "--model", "137m", "--examples", "16", "--rounds", "2"],
}


def main() -> int:
    names = sys.argv[1:] or list(BENCHES)
    unknown = set(names) - set(BENCHES)
    if unknown:
        print(f"unknown benchmark(s) {sorted(unknown)}; choose from {list(BENCHES)}", file=sys.stderr)
        return 2
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    failed = []
    for name in names:
        cmd = [sys.executable, *BENCHES[name]]
        print(f"\n## {name}\n$ {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        if subprocess.run(cmd, env=env).returncode:
            failed.append(name)
        print(f"({time.perf_counter() - t0:.0f} s)", flush=True)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
