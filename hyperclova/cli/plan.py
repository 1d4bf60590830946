"""Which TP x PP x DP, micro-batch and recompute for this model on this cluster, how much memory
per GPU, how long? Enumerates layouts, estimates each, prints a ranked table and the overrides.

    python tools/plan.py --preset 82b --nodes 128 --gpu a100-80gb --global-batch 1024 --tokens 150e9
    python tools/plan.py --layers 24 --d-model 2048 --heads 16 --nodes 4 --explain
    python tools/plan.py --preset 13b --nodes 16 --tp 8 --pp 2 --check-dry-run
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

from hyperclova.config import Config, ModelConfig, validate
from hyperclova.errors import UserError, cli_main
from hyperclova.model.presets import PRESETS
from hyperclova.plan.dryrun import check_plan_row
from hyperclova.plan.hardware import GPUS, Cluster, get_gpu
from hyperclova.plan.report import explain, format_overrides, format_table
from hyperclova.plan.search import RECOMPUTE, Job, search


def build_model(args: argparse.Namespace) -> ModelConfig:
    if args.preset:
        if args.preset not in PRESETS:
            raise UserError(f"--preset {args.preset!r}: choose one of {', '.join(PRESETS)}")
        model = PRESETS[args.preset]
    else:
        if not (args.layers and args.d_model and args.heads):
            raise UserError("give --preset NAME, or all of --layers, --d-model and --heads")
        model = ModelConfig(n_layers=args.layers, d_model=args.d_model, n_heads=args.heads)
    if args.vocab:
        model = replace(model, vocab_size=args.vocab)
    if args.seq_len:
        model = replace(model, seq_len=args.seq_len)
    validate(Config(model=model))
    return model


def int_list(text: str | None, flag: str) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected comma-separated integers") from None


@cli_main
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", help=f"model size from Table 2: {', '.join(PRESETS)}")
    ap.add_argument("--layers", type=int)
    ap.add_argument("--d-model", type=int)
    ap.add_argument("--heads", type=int)
    ap.add_argument("--vocab", type=int, help="vocabulary size (default 64000)")
    ap.add_argument("--seq-len", type=int, help="sequence length (default 2048)")
    ap.add_argument("--nodes", type=int, default=128)
    ap.add_argument("--gpus-per-node", type=int, default=8)
    ap.add_argument("--gpu", default="a100-80gb", help=", ".join(GPUS))
    ap.add_argument("--global-batch", type=int, default=1024, help="sequences per step")
    ap.add_argument("--tokens", type=float, default=150e9, help="training budget in tokens")
    ap.add_argument("--tp", help="restrict TP degrees, e.g. 4,8")
    ap.add_argument("--pp", help="restrict PP degrees, e.g. 4,8")
    ap.add_argument("--recompute", help=f"restrict to some of {','.join(RECOMPUTE)}")
    ap.add_argument("--no-zero", action="store_true", help="only dp_shard=1 (plain DDP)")
    ap.add_argument("--no-flash", action="store_true",
                    help="attention stores its s x s scores (no flash attention)")
    ap.add_argument("--top", type=int, default=15, help="rows to print")
    ap.add_argument("--explain", action="store_true", help="show the arithmetic of the best row")
    ap.add_argument("--check-dry-run", action="store_true",
                    help="build the best layout's shards on the meta device and compare")
    args = ap.parse_args(argv)

    if args.nodes < 1 or args.gpus_per_node < 1 or args.top < 1:
        raise UserError("--nodes, --gpus-per-node and --top must be positive")
    recompute = tuple(args.recompute.split(",")) if args.recompute else RECOMPUTE
    if bad := [r for r in recompute if r not in RECOMPUTE]:
        raise UserError(f"--recompute: {bad} not in {', '.join(RECOMPUTE)}")
    job = Job(model=build_model(args), cluster=Cluster(args.nodes, args.gpus_per_node,
                                                      get_gpu(args.gpu)),
              global_batch=args.global_batch, tokens=args.tokens, flash=not args.no_flash)
    start = time.perf_counter()
    rows = search(job, tp=int_list(args.tp, "--tp"), pp=int_list(args.pp, "--pp"),
                  recompute=recompute, zero=not args.no_zero)
    elapsed = time.perf_counter() - start
    print(format_table(job, rows, args.top))
    print(format_overrides(job, rows, 3))
    if args.explain:
        print(explain(job, rows[0]))
    if args.check_dry_run:
        print(check_plan_row(job, rows[0]))
    print(f"searched {len(rows)} layouts in {elapsed:.2f} s")


if __name__ == "__main__":
    main()
