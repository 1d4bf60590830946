"""Plot a run's loss curve: python tools/plot_metrics.py runs/x/metrics.jsonl --output loss.png"""
import argparse

from hyperclova.errors import cli_main
from hyperclova.paths import make_parent
from hyperclova.train.plot import plot_metrics


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("metrics", help="metrics.jsonl written by hyperclova.train")
    p.add_argument("--output", default="loss.png")
    args = p.parse_args(argv)
    make_parent(args.output, "--output")
    print(f"wrote {plot_metrics(args.metrics, args.output)}")


if __name__ == "__main__":
    main()
