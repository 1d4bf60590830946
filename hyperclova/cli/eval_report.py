"""Put several `python -m hyperclova.eval --output` result files side by side (Table 3 shape).

    hyperclova-eval-report results/*.json --baseline --output report.md
"""
from __future__ import annotations

import argparse
from pathlib import Path

from hyperclova.errors import cli_main
from hyperclova.eval.report import load_results, markdown_table


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", help="result JSON files")
    p.add_argument("--baseline", action="store_true", help="add the majority-class row")
    p.add_argument("--output", help="also write the table to this Markdown file")
    args = p.parse_args(argv)
    table = markdown_table(load_results(args.results), args.baseline)
    print(table)
    if args.output:
        Path(args.output).write_text(table, encoding="utf-8")


if __name__ == "__main__":
    main()
