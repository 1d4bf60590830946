r"""Concatenate Megatron `.bin/.idx` shards (of one token dtype) into one per json key.

    python tools/merge_datasets.py --input data/part0 data/part1 --output-prefix data/all
    # data/part0_text_document + data/part1_text_document -> data/all_text_document.bin/.idx
    python tools/merge_datasets.py --input data/parts/ --output-prefix data/all --json-keys question answer

--output-prefix and the prefixes in --input mean what they mean for tools/preprocess_data.py:
{prefix}_{key}_document. An input may also name one shard itself (data/x_text_document, with or
without .bin/.idx), or a directory, whose *_{key}_document shards merge in name order. The merged
shard appears under its final name only when complete; an existing one is replaced only with
--overwrite.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from hyperclova.data.indexed import merge_shards, shard_prefix, strip_shard_suffix
from hyperclova.errors import UserError, cli_main
from hyperclova.paths import make_parent, refuse_overwrite


def expand(inputs: list[str], key: str, several_keys: bool = False) -> list[str]:
    """Shard prefixes of `key` named by `inputs` (see the module docstring), in order."""
    prefixes: list[str] = []
    for item in inputs:
        if Path(item).is_dir():
            found = sorted(str(p)[:-4] for p in Path(item).glob(f"*_{key}_document.idx"))
            if not found:
                raise UserError(f"input directory {item} has no *_{key}_document.idx shards")
            prefixes += found
            continue
        prefix = strip_shard_suffix(item)
        if os.path.exists(prefix + ".idx") and not os.path.exists(shard_prefix(prefix, key) + ".idx"):
            if several_keys:
                raise UserError(f"--input {item} is one shard, but several --json-keys are merged: give "
                                "prefixes as preprocess_data's --output-prefix")
            prefixes.append(prefix)
        else:
            prefixes.append(shard_prefix(prefix, key))
    return prefixes


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", nargs="+", required=True, help="prefixes, shards or directories of shards")
    p.add_argument("--output-prefix", required=True, help="writes {prefix}_{key}_document.bin/.idx")
    p.add_argument("--json-keys", nargs="+", default=["text"], help="keys whose shards to merge (default: text)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output shards")
    args = p.parse_args(argv)
    for key in args.json_keys:
        if args.output_prefix.endswith(f"_{key}_document"):
            raise UserError(f"--output-prefix {args.output_prefix} names a shard; give the prefix before "
                            f"_{key}_document, as for preprocess_data (it writes {{prefix}}_{key}_document)")
    make_parent(args.output_prefix, "--output-prefix")
    outputs = {key: shard_prefix(args.output_prefix, key) for key in args.json_keys}
    if not args.overwrite:
        refuse_overwrite([o + s for o in outputs.values() for s in (".bin", ".idx")],
                         f"--output-prefix {args.output_prefix}")
    for key, output in outputs.items():
        prefixes = expand(args.input, key, len(args.json_keys) > 1)
        meta = merge_shards(prefixes, output)
        print(f"merged {len(prefixes)} shards into {output}.bin/.idx: "
              f"{meta.documents:,} documents, {meta.tokens:,} {meta.dtype} tokens")


if __name__ == "__main__":
    main()
