r"""Serialize JSONL or plain text (one document per line) into Megatron `.bin/.idx` shards.

    python tools/preprocess_data.py --input data/clean/ --output-prefix data/corpus \
        --tokenizer tok/ --workers 8 --append-eod
    # -> data/corpus_text_document.bin/.idx (uint16 tokens when the vocabulary is under 65,500)

On many machines, as resumable tasks merged at the end into the same bytes (docs/data.md):

    python tools/preprocess_data.py ... --executor ray --workers 64          # Ray ($RAY_ADDRESS or local)
    INPUT=data/clean OUTPUT_PREFIX=data/corpus TOKENIZER=tok ARRAY=32 bash launch/preprocess_data.sbatch

Bad lines (invalid UTF-8 or JSON, a missing or non-string key, empty text, ...) are skipped and
counted by reason with their file:line; --strict stops at the first one instead. Existing shards
are replaced only with --overwrite.
"""
from __future__ import annotations

import argparse
import sys

from hyperclova.corpus.executors import EXECUTORS
from hyperclova.data.reader import DEFAULT_BLOCK_BYTES, add_input_args
from hyperclova.errors import cli_main
from hyperclova.processes import Terminated, clamp_workers, terminate_as_interrupt, usable_cores


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_input_args(p, required=False)
    p.add_argument("--output-prefix", required=True, help="writes {prefix}_{key}_document.bin/.idx per --json-keys key")
    p.add_argument("--tokenizer", metavar="DIR", help="tokenizer directory (required but for --stage encode/merge)")
    p.add_argument("--workers", type=int, default=usable_cores(),
                   help="encoding processes (default: all usable cores); with --executor: tasks at a time")
    p.add_argument("--append-eod", action="store_true", help="end every document with the EOD token")
    p.add_argument("--overwrite", action="store_true", help="replace existing shards (and a run's tasks)")
    p.add_argument("--block-mb", type=float, default=DEFAULT_BLOCK_BYTES / 2**20, help="MiB of input per work unit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    t = p.add_argument_group("resumable tasks on many machines (docs/data.md)")
    t.add_argument("--executor", choices=EXECUTORS, default=None,
                   help="split the input into tasks that each write a shard and a completion marker, run "
                        "them here (local), as a SLURM array element (slurm) or on Ray (ray), then merge; "
                        "default: one streaming pass on this machine")
    t.add_argument("--stage", choices=["plan", "encode", "merge", "all"], default="all",
                   help="with --executor: run one stage (SLURM runs each as its own job)")
    t.add_argument("--task-mb", type=float, default=256.0, help="MiB of input per task")
    t.add_argument("--work-dir", default=None, help="tasks' shards and markers (default: {prefix}.tasks/)")
    t.add_argument("--keep-tasks", action="store_true", help="keep the work directory after the merge")
    args = p.parse_args(argv)
    if args.executor is None and not args.input:
        p.error("the following arguments are required: --input")
    if args.executor is None and not args.tokenizer:
        p.error("the following arguments are required: --tokenizer")
    return args


@cli_main
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    workers = args.workers
    if args.executor != "ray":  # Ray's workers may be other machines' cores
        workers = clamp_workers(workers)
    block_bytes = max(1, int(args.block_mb * 2**20))
    try:
        with terminate_as_interrupt():
            if args.executor is None:
                from hyperclova.data.serialize import preprocess

                stats = preprocess(
                    args.input, args.output_prefix, args.tokenizer, json_keys=args.json_keys, workers=workers,
                    append_eod=args.append_eod, strict=args.strict, input_format=args.input_format,
                    block_bytes=block_bytes, progress=not args.no_progress, overwrite=args.overwrite,
                )
            else:
                from hyperclova.data.serialize_tasks import preprocess_tasks

                stats = preprocess_tasks(
                    args.input, args.output_prefix, args.tokenizer, json_keys=args.json_keys,
                    executor=args.executor, workers=workers, append_eod=args.append_eod, strict=args.strict,
                    input_format=args.input_format, task_bytes=max(1, int(args.task_mb * 2**20)),
                    block_bytes=block_bytes, work_dir=args.work_dir, stage=args.stage,
                    overwrite=args.overwrite, keep_tasks=args.keep_tasks,
                )
    except KeyboardInterrupt as e:
        what = "terminated" if isinstance(e, Terminated) else "interrupted"
        if args.executor:
            print(f"\n{what}: finished tasks are kept; a rerun resumes (and removes partial ones)", file=sys.stderr)
        else:
            print(f"\n{what}: temporary files removed, no shard written", file=sys.stderr)
        sys.exit(143 if isinstance(e, Terminated) else 130)
    if stats is None:
        print(f"stage {args.stage} done ({args.executor})")
    else:
        print(stats.summary())


if __name__ == "__main__":
    main()
