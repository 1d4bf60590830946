"""Clean a JSONL corpus: normalise, de-identify, filter, deduplicate (exactly and near), report.

    python tools/clean_corpus.py --input data/raw.jsonl --output data/clean --workers 2
    python tools/clean_corpus.py --input data/raw/ --output data/clean --recipe configs/corpus/korean_default.yaml \\
        --executor ray --workers 8 --rejects
    # SLURM: launch/clean_corpus.sbatch submits --stage plan/process/dedup/finalize/report jobs.

Cleaned shards land in OUTPUT/data/, dropped documents (with --rejects) in OUTPUT/rejects/<reason>/,
and the report in OUTPUT/report.json and OUTPUT/report.txt. A rerun into the same OUTPUT resumes.
"""
from __future__ import annotations

import argparse

from hyperclova.corpus.executors import EXECUTORS
from hyperclova.corpus.pipeline import STAGES, run
from hyperclova.errors import cli_main


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", nargs="+", default=[], help="JSONL files (.gz/.zst too) or directories")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--recipe", default=None, help="YAML recipe (default: configs/corpus/korean_default.yaml)")
    p.add_argument("--executor", choices=EXECUTORS, default="local")
    p.add_argument("--workers", type=int, default=1, help="processes (local) or CPUs (ray, local cluster)")
    p.add_argument("--stage", choices=STAGES + ["all"], default="all")
    p.add_argument("--rejects", action="store_true", help="also write dropped documents per reason")
    args = p.parse_args(argv)
    report = run(args.input, args.output, args.recipe, args.executor, args.workers, args.stage, args.rejects)
    if report is not None:
        print(report["text"], end="")
        print(f"cleaned shards: {args.output}/data/  report: {args.output}/report.json")
    else:
        print(f"stage {args.stage} done ({args.executor})")


if __name__ == "__main__":
    main()
