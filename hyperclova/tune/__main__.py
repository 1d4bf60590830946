"""`python -m hyperclova.tune --config FILE --checkpoint BASE [--train-samples N] [key=value ...]`

Tunes a frozen pre-trained checkpoint on a task with LoRA or P-tuning (or fine-tunes it whole),
in any parallel layout, under torchrun, SLURM or MPI like pre-training (docs/tune.md).
"""
from __future__ import annotations

import argparse
import warnings

from torch.distributed.elastic.multiprocessing.errors import record

from hyperclova.errors import cli_main


@record
@cli_main
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m hyperclova.tune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="tuning YAML (see configs/tune/)")
    parser.add_argument("--checkpoint", required=True,
                        help="the frozen base: a run's checkpoint dir (its latest) or a step dir")
    parser.add_argument("--train-samples", type=int,
                        help="tune on N examples drawn from the training file (tune.train_samples)")
    parser.add_argument("overrides", nargs="*",
                        help="dotted overrides, e.g. tune.lora.rank=16 train.steps=500 parallel.tp=2")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="Transformer Engine and Apex are not installed")
    from hyperclova.tune.trainer import tune, tune_config

    cfg = tune_config(args.config, args.checkpoint, args.overrides, args.train_samples)
    return tune(cfg)


if __name__ == "__main__":
    main()
