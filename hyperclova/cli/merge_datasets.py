r"""Concatenate Megatron `.bin/.idx` shards (of one token dtype) into one.

    python tools/merge_datasets.py --input data/part0_text_document data/part1_text_document \
        --output-prefix data/all_text_document
    python tools/merge_datasets.py --input data/parts/ --output-prefix data/all_text_document

Inputs are prefixes (a trailing .bin/.idx is ignored) or directories, whose shards merge in name
order. The merged shard appears under its final name only when complete.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from hyperclova.data.indexed import merge_shards, strip_shard_suffix
from hyperclova.errors import UserError, cli_main


def expand(inputs: list[str]) -> list[str]:
    prefixes: list[str] = []
    for item in inputs:
        if Path(item).is_dir():
            found = sorted(str(p)[:-4] for p in Path(item).glob("*.idx"))
            if not found:
                raise UserError(f"input directory {item} has no .idx files")
            prefixes += found
        else:
            prefixes.append(strip_shard_suffix(item))
    return prefixes


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", nargs="+", required=True, help="shard prefixes or directories of shards")
    p.add_argument("--output-prefix", required=True, help="writes {prefix}.bin/.idx")
    args = p.parse_args(argv)
    prefixes = expand(args.input)
    meta = merge_shards(prefixes, args.output_prefix)
    print(f"merged {len(prefixes)} shards into {args.output_prefix}.bin/.idx: "
          f"{meta.documents:,} documents, {meta.tokens:,} {meta.dtype} tokens")


if __name__ == "__main__":
    main()
