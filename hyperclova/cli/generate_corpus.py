"""Write the embedded synthetic Korean corpus as JSONL.

    python tools/generate_corpus.py --output data/corpus.jsonl --docs 20000 --seed 0
    python tools/generate_corpus.py --output data/raw.jsonl --docs 20000 --noise 1.0   # with planted noise
"""
from __future__ import annotations

import argparse
import json

from hyperclova.corpus.synthetic import generate_corpus
from hyperclova.errors import UserError, cli_main
from hyperclova.paths import make_parent


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", required=True, help="JSONL file to write")
    p.add_argument("--docs", type=int, default=20000, help="number of documents")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", type=float, default=0.0,
                   help="scale of planted noise (duplicates, PII, ads, junk); 0 = clean, 1 = default rates")
    args = p.parse_args(argv)
    if args.docs < 0:
        raise UserError(f"--docs must be >= 0, got {args.docs}")
    if args.noise < 0:
        raise UserError(f"--noise must be >= 0, got {args.noise}")
    make_parent(args.output, "--output")
    stats = generate_corpus(args.output, n_docs=args.docs, seed=args.seed, noise=args.noise)
    print(f"wrote {stats['docs']} documents, {stats['bytes'] / 1e6:.2f} MB to {stats['path']} "
          f"in {stats['seconds']:.1f} s")
    print("by source:", json.dumps(stats["by_source"], ensure_ascii=False))
    print("by category:", json.dumps(stats["by_category"], ensure_ascii=False))
    if stats["planted"]:
        print("planted noise:", json.dumps(stats["planted"], ensure_ascii=False))


if __name__ == "__main__":
    main()
