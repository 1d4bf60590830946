"""Convert checkpoints: to and from Hugging Face transformers, consolidate, reshard; tuned
checkpoints: merge an adapter, export to peft or stored prompt embeddings.

    python tools/convert_checkpoint.py to-hf runs/x/checkpoints hf_out --dtype bf16 --tokenizer tok/
    python tools/convert_checkpoint.py from-hf gpt2_dir runs/y/checkpoints --allow-approx-gelu
    python tools/convert_checkpoint.py consolidate runs/x/checkpoints model.safetensors
    python tools/convert_checkpoint.py reshard runs/x/checkpoints runs/x2/checkpoints parallel.tp=2
    python tools/convert_checkpoint.py merge-adapter runs/tune/checkpoints merged/checkpoints
    python tools/convert_checkpoint.py export-peft runs/tune/checkpoints peft_adapter/
    python tools/convert_checkpoint.py export-prompts runs/ptune/checkpoints prompts/

A checkpoint argument is a checkpoint directory (its `latest` is followed) or one step directory.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

from hyperclova.convert import (  # noqa: E402
    consolidate,
    export_peft,
    export_prompts,
    from_hf,
    merge_adapter,
    reshard,
    to_hf,
)
from hyperclova.convert.to_hf import DTYPES, Summary  # noqa: E402
from hyperclova.errors import cli_main  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("to-hf", help="DCP checkpoint -> Hugging Face GPT2LMHeadModel directory")
    s.add_argument("checkpoint")
    s.add_argument("out_dir")
    s.add_argument("--dtype", choices=list(DTYPES), default="fp32")
    s.add_argument("--tokenizer", help="hyperclova tokenizer directory to include")
    s.add_argument("--config", help="config.yaml to use instead of the one saved with the checkpoint")

    s = sub.add_parser("from-hf", help="Hugging Face GPT-2-architecture directory -> DCP checkpoint")
    s.add_argument("hf_dir")
    s.add_argument("out_dir", help="new or empty checkpoint directory (gets step_00000000 and latest)")
    s.add_argument("--dtype", choices=list(DTYPES), default="fp32",
                   help="stored weight dtype (training keeps fp32 master weights: keep fp32)")
    s.add_argument("--config", help="base run config (data, train, parallel...); model comes from HF")
    s.add_argument("--allow-approx-gelu", action="store_true",
                   help="accept tanh-approximate GeLU (OpenAI GPT-2 weights); our model runs exact GeLU")
    s.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. train.lr=1e-4")

    s = sub.add_parser("consolidate", help="DCP checkpoint -> one safetensors file of model weights")
    s.add_argument("checkpoint")
    s.add_argument("out_file")
    s.add_argument("--dtype", choices=list(DTYPES), default="fp32")
    s.add_argument("--config", help="config.yaml to use instead of the one saved with the checkpoint")

    s = sub.add_parser("reshard", help="DCP checkpoint -> layout-free DCP copy with a new parallel config")
    s.add_argument("checkpoint")
    s.add_argument("out_dir", help="new or empty checkpoint directory (gets step_N and latest)")
    s.add_argument("--config", help="config.yaml to use instead of the one saved with the checkpoint")
    s.add_argument("overrides", nargs="*", help="new layout, e.g. parallel.tp=2 parallel.pp=2")

    s = sub.add_parser("merge-adapter", help="tuned LoRA (or full) checkpoint + base -> plain DCP checkpoint")
    s.add_argument("adapter")
    s.add_argument("out_dir", help="new or empty checkpoint directory (gets step_N and latest)")
    s.add_argument("--checkpoint", help="the base (default: the one the adapter names)")

    s = sub.add_parser("export-peft", help="tuned LoRA checkpoint -> peft adapter directory")
    s.add_argument("adapter")
    s.add_argument("out_dir")
    s.add_argument("--base-model", help="base_model_name_or_path to record (e.g. the to-hf export)")

    s = sub.add_parser("export-prompts", help="tuned P-tuning checkpoint -> stored prompt embeddings")
    s.add_argument("adapter")
    s.add_argument("out_dir")
    return p.parse_args(argv)


def report(what: str, s: Summary, seconds: float) -> None:
    print(f"{what}: {s.source} -> {s.output}")
    print(f"  {s.tensors} tensors, {s.parameters:,} model parameters, {s.bytes_written / 2**20:,.1f} MiB "
          f"written in {seconds:.1f} s")
    for note in s.notes:
        print(f"  note: {note}")


@cli_main
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    t0 = time.perf_counter()
    if args.command == "to-hf":
        s = to_hf(args.checkpoint, args.out_dir, args.dtype, args.tokenizer, args.config)
    elif args.command == "from-hf":
        s = from_hf(args.hf_dir, args.out_dir, args.dtype, args.config, args.overrides, args.allow_approx_gelu)
    elif args.command == "consolidate":
        s = consolidate(args.checkpoint, args.out_file, args.dtype, args.config)
    elif args.command == "reshard":
        s = reshard(args.checkpoint, args.out_dir, args.overrides, args.config)
    elif args.command == "merge-adapter":
        s = merge_adapter(args.adapter, args.out_dir, args.checkpoint)
    elif args.command == "export-peft":
        s = export_peft(args.adapter, args.out_dir, args.base_model)
    else:
        s = export_prompts(args.adapter, args.out_dir)
    report(args.command, s, time.perf_counter() - t0)


if __name__ == "__main__":
    main(sys.argv[1:])
