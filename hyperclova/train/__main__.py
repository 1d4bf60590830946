"""`python -m hyperclova.train [--config FILE] [section.key=value ...]`"""
from __future__ import annotations

import argparse
import warnings

from torch.distributed.elastic.multiprocessing.errors import record

from hyperclova.config import load_config
from hyperclova.errors import cli_main
from hyperclova.paths import find_config


@record
@cli_main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hyperclova.train", description=__doc__)
    parser.add_argument("--config", help="YAML config file, or a shipped one by name (demo, 1.3b, ...: see configs/)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=3e-4 model=1.3b")
    parser.add_argument("--dry-run", action="store_true",
                        help="build chosen ranks' model shards on the meta device, print their memory")
    parser.add_argument("--ranks", help="with --dry-run: comma-separated global ranks "
                                        "(default: one per pipeline stage)")
    args = parser.parse_args(argv)
    # megatron-core (datasets only) announces on import that apex/TE are absent; we use neither.
    warnings.filterwarnings("ignore", message="Transformer Engine and Apex are not installed")
    cfg = load_config(find_config(args.config) if args.config else None, args.overrides)
    if args.dry_run:
        from hyperclova.plan.dryrun import dry_run, format_report, parse_ranks

        print(format_report(cfg, dry_run(cfg, parse_ranks(args.ranks))))
        return
    from hyperclova.train.trainer import train

    train(cfg)


if __name__ == "__main__":
    main()
