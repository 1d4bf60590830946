"""Compare tokenizer types trained on the same corpus (HyperCLOVA Table 6): fertility, share of tokens that
cross a morpheme boundary, unknown rate, and vocabulary overlap against sample ratio (PNG).

    python tools/tokenizer_report.py --input train.jsonl --eval eval.jsonl --output runs/tokreport \
        --vocab-size 4096 --png docs/tokenizer_overlap.png
"""
from __future__ import annotations

import argparse

from hyperclova.data.reader import add_input_args
from hyperclova.errors import UserError, cli_main
from hyperclova.processes import clamp_workers
from hyperclova.tokenizer.load import TYPES
from hyperclova.tokenizer.report import run_report


@cli_main
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_input_args(p)
    p.add_argument("--eval", nargs="+", help="evaluation files (default: the training files)")
    p.add_argument("--output", required=True, help="tokenizers, report.json and report.md go here")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier report in --output")
    p.add_argument("--types", nargs="+", default=list(TYPES), choices=TYPES)
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--ratios", nargs="+", type=float, default=[0.01, 0.03, 0.1, 0.3])
    p.add_argument("--overlap-types", nargs="+", default=["morpheme-bbpe", "bbpe"], choices=TYPES)
    p.add_argument("--png", help="write the overlap plot here")
    p.add_argument("--eval-docs", type=int, default=2000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if any(not 0 < r <= 1 for r in a.ratios):
        raise UserError(f"--ratios must be in (0, 1], got {a.ratios}")
    report = run_report(a.input, a.eval or a.input, a.output, a.types, a.vocab_size, a.ratios,
                        a.overlap_types, a.png, a.json_keys, a.eval_docs, clamp_workers(a.workers), a.seed,
                        input_format=a.input_format, strict=a.strict, overwrite=a.overwrite)
    print(open(f"{a.output}/report.md", encoding="utf-8").read())
    print(f"evaluated on {report['eval_docs']} documents; report in {a.output}/report.json"
          + (f", plot {a.png}" if a.png else ""))


if __name__ == "__main__":
    main()
