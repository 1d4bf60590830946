r"""Serialize JSONL or plain text (one document per line) into Megatron `.bin/.idx` shards.

    python tools/preprocess_data.py --input data/clean.jsonl --output-prefix data/corpus \
        --tokenizer tok/ --workers 8 --append-eod
    # -> data/corpus_text_document.bin/.idx (uint16 tokens when the vocabulary is under 65,500)

Bad lines (invalid UTF-8 or JSON, a missing or non-string key, empty text) are skipped and counted
by reason with their file:line; --strict stops at the first one instead.
"""
from __future__ import annotations

import argparse
import os
import sys

from hyperclova.data.serialize import DEFAULT_BLOCK_BYTES, preprocess
from hyperclova.errors import cli_main


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", nargs="+", required=True,
                   help="JSONL (.jsonl/.json/.ndjson) or text (.txt) files, or directories of them")
    p.add_argument("--output-prefix", required=True, help="writes {prefix}_{key}_document.bin/.idx")
    p.add_argument("--tokenizer", required=True, metavar="DIR", help="tokenizer directory")
    p.add_argument("--json-keys", nargs="+", default=["text"], help="JSON keys to serialize (one shard each)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="encoding processes (default: all cores)")
    p.add_argument("--append-eod", action="store_true", help="end every document with the EOD token")
    p.add_argument("--strict", action="store_true", help="stop at the first bad line instead of skipping it")
    p.add_argument("--input-format", choices=["auto", "jsonl", "text"], default="auto",
                   help="auto: by file extension")
    p.add_argument("--block-mb", type=float, default=DEFAULT_BLOCK_BYTES / 2**20,
                   help="MiB of input per work unit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        stats = preprocess(
            args.input, args.output_prefix, args.tokenizer, json_keys=args.json_keys, workers=args.workers,
            append_eod=args.append_eod, strict=args.strict, input_format=args.input_format,
            block_bytes=max(1, int(args.block_mb * 2**20)), progress=not args.no_progress,
        )
    except KeyboardInterrupt:
        print("\ninterrupted: temporary files removed, no shard written", file=sys.stderr)
        sys.exit(130)
    print(stats.summary())


if __name__ == "__main__":
    main()
