"""Plan a corpus mix: available tokens per source, realised shares, epochs, and the data.blend list.

    python tools/mix_corpus.py --recipe configs/corpus/mix_table1.yaml --total-tokens 3e8 --output mix.yaml

Prints a table (unmet shares are marked, never hidden), then the trainer override
`data.blend=[w1, prefix1, ...]`; --output writes {data: {blend: ...}, mix: <report>} as YAML.
"""
from __future__ import annotations

import argparse

import yaml

from hyperclova.corpus.mixer import format_mix, load_mix, plan_mix
from hyperclova.errors import UserError, cli_main
from hyperclova.paths import find_config, make_parent


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", required=True,
                   help="mix YAML (sources with prefix and share): a file or a shipped one by name, e.g. corpus/mix_table1")
    p.add_argument("--total-tokens", type=float, default=None, help="planned training tokens (overrides recipe)")
    p.add_argument("--max-epochs", type=float, default=None, help="repetition cap (overrides recipe)")
    p.add_argument("--output", default=None, help="write the blend and the report here (YAML)")
    args = p.parse_args(argv)
    raw, sources = load_mix(find_config(args.recipe, "--recipe"))
    total = args.total_tokens if args.total_tokens is not None else raw.get("total_tokens")
    max_epochs = args.max_epochs if args.max_epochs is not None else raw.get("max_epochs", 4.0)
    try:
        total = float(total) if total is not None else None
        max_epochs = float(max_epochs)
    except (TypeError, ValueError):
        raise UserError(f"{args.recipe}: total_tokens and max_epochs must be numbers")
    report = plan_mix(sources, total, max_epochs)
    print(format_mix(report), end="")
    blend = ", ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in report["blend"])
    print(f"data.blend=[{blend}]")
    if args.output:
        make_parent(args.output, "--output")
        with open(args.output, "w", encoding="utf-8") as f:
            yaml.safe_dump({"data": {"blend": report["blend"]}, "mix": report}, f, sort_keys=False,
                           allow_unicode=True)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
