"""Plot a score against model size or training step from result files, one line per tokenizer.

    hyperclova-plot-eval results/*.json --task nsmc --metric accuracy --x params --output nsmc.png
"""
from __future__ import annotations

import argparse

from hyperclova.errors import cli_main
from hyperclova.eval.report import load_results, plot


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+")
    p.add_argument("--task", required=True)
    p.add_argument("--metric", required=True)
    p.add_argument("--x", choices=["params", "step"], default="params")
    p.add_argument("--output", default="eval.png")
    args = p.parse_args(argv)
    plot(load_results(args.results), args.task, args.metric, args.x, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
