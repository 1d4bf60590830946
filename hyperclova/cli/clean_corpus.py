"""Clean a JSONL corpus: normalise, de-identify, filter, deduplicate (exactly and near), report.

    python tools/clean_corpus.py --input data/raw.jsonl --output data/clean --workers 2
    python tools/clean_corpus.py --input data/raw/ --output data/clean --recipe corpus/korean_default \\
        --executor ray --workers 8 --rejects
    # SLURM: launch/clean_corpus.sbatch submits --stage plan/process/dedup/finalize/report jobs.

Cleaned shards land in OUTPUT/data/, dropped documents (with --rejects) in OUTPUT/rejects/<reason>/,
and the report in OUTPUT/report.json and OUTPUT/report.txt. A rerun into the same OUTPUT resumes;
one whose inputs or recipe changed is refused, and --overwrite starts over.
"""
from __future__ import annotations

import argparse

import sys

from hyperclova.corpus.executors import EXECUTORS
from hyperclova.corpus.pipeline import STAGES, run
from hyperclova.data.reader import add_input_args
from hyperclova.errors import cli_main
from hyperclova.paths import find_config
from hyperclova.processes import Terminated, clamp_workers, terminate_as_interrupt


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_input_args(p, required=False)
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--recipe", default=None,
                   help="YAML recipe: a file or a shipped one by name (default: corpus/korean_default)")
    p.add_argument("--executor", choices=EXECUTORS, default="local")
    p.add_argument("--workers", type=int, default=1, help="processes (local) or CPUs (ray, local cluster)")
    p.add_argument("--stage", choices=STAGES + ["all"], default="all")
    p.add_argument("--rejects", action="store_true", help="also write dropped documents per reason")
    p.add_argument("--overwrite", action="store_true", help="start over in an OUTPUT that holds another run")
    args = p.parse_args(argv)
    recipe = find_config(args.recipe, "--recipe") if args.recipe else None
    workers = clamp_workers(args.workers) if args.executor == "local" else args.workers
    try:
        with terminate_as_interrupt():
            report = run(args.input, args.output, recipe, args.executor, workers, args.stage, args.rejects,
                         args.input_format, tuple(args.json_keys), args.strict, args.overwrite)
    except KeyboardInterrupt as e:
        print(f"\n{'terminated' if isinstance(e, Terminated) else 'interrupted'}: finished tasks are kept; "
              "a rerun resumes", file=sys.stderr)
        sys.exit(143 if isinstance(e, Terminated) else 130)
    if report is not None:
        print(report["text"], end="")
        print(f"cleaned shards: {args.output}/data/  report: {args.output}/report.json")
    else:
        print(f"stage {args.stage} done ({args.executor})")


if __name__ == "__main__":
    main()
