"""The corpus mixer: target shares per source -> realised shares, epochs, and the trainer's data.blend.

    total_tokens: 300_000_000   # planned training tokens (default: every available token once)
    max_epochs: 4.0             # a source repeated more than this cannot meet its share
    sources:
      blog: {prefix: data/blog_text_document, share: 0.487}
      news: {prefix: data/news_text_document, share: 0.131}

Available tokens per source are the sum of sequence lengths in its Megatron `.idx` file (read
from the index alone: no token data is touched), or a `tokens:` value
given in the recipe. A source whose share would need more than `max_epochs` passes is capped at
`max_epochs` and reported as unmet; its missing tokens go to the other sources in proportion to
their shares (repeatedly, in case that pushes another over the cap). If every source is capped,
the total shrinks instead, and the report says so.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hyperclova.errors import UserError, read_yaml_mapping

def idx_token_count(prefix: str | Path) -> tuple[int, int]:
    """(tokens, documents) of a Megatron indexed dataset, from its .idx alone."""
    from hyperclova.data.indexed import read_header, sequence_lengths

    prefix = str(prefix)
    if not Path(f"{prefix}.idx").is_file():
        raise UserError(f"{prefix}.idx not found (prefix {prefix}: expected {prefix}.bin/.idx from "
                        "preprocess_data)")
    _, n_seq, n_doc = read_header(prefix)
    try:
        lengths = sequence_lengths(prefix, n_seq)
    except ValueError:  # the file ends before its sequence lengths do
        raise UserError(f"{prefix}.idx is truncated: it cannot hold {n_seq} sequence lengths") from None
    return int(lengths.sum(dtype=np.int64)), int(n_doc) - 1


@dataclass
class SourcePlan:
    name: str
    prefix: str
    share: float  # target, normalised
    available: int
    tokens: float = 0.0  # planned tokens drawn
    capped: bool = False

    @property
    def epochs(self) -> float:
        return self.tokens / self.available if self.available else 0.0


def load_mix(path: str | Path) -> tuple[dict, list[dict]]:
    path = Path(path)
    raw = read_yaml_mapping(path, "mix recipe")
    if not isinstance(raw, dict) or not isinstance(raw.get("sources"), dict) or not raw["sources"]:
        raise UserError(f"{path}: expected a mapping with a non-empty 'sources:' mapping")
    unknown = set(raw) - {"sources", "total_tokens", "max_epochs"}
    if unknown:
        raise UserError(f"{path}: unknown top-level key(s) {sorted(unknown)}")
    sources = []
    for name, spec in raw["sources"].items():
        where = f"{path}: sources.{name}"
        if not isinstance(spec, dict) or "share" not in spec or "prefix" not in spec:
            raise UserError(f"{where}: needs 'prefix' and 'share'")
        bad = set(spec) - {"prefix", "share", "tokens"}
        if bad:
            raise UserError(f"{where}: unknown key(s) {sorted(bad)}; allowed: prefix, share, tokens")
        if not isinstance(spec["share"], (int, float)) or spec["share"] <= 0:
            raise UserError(f"{where}.share must be a positive number, got {spec['share']!r}")
        sources.append({"name": str(name), **spec})
    return raw, sources


def plan_mix(sources: list[dict], total_tokens: float | None = None, max_epochs: float = 4.0) -> dict:
    """Plan tokens per source; `sources` are dicts with name, prefix, share and optional tokens."""
    if max_epochs <= 0:
        raise UserError(f"max_epochs must be > 0, got {max_epochs}")
    share_sum = sum(s["share"] for s in sources)
    plans = []
    for s in sources:
        available = int(s["tokens"]) if "tokens" in s else idx_token_count(s["prefix"])[0]
        plans.append(SourcePlan(s["name"], s["prefix"], s["share"] / share_sum, available))
    total = float(total_tokens) if total_tokens else float(sum(p.available for p in plans))
    _water_fill(plans, total, max_epochs)
    drawn = sum(p.tokens for p in plans)
    rows = []
    for p in plans:
        realised = p.tokens / drawn if drawn else 0.0
        note = "ok"
        if p.available == 0:
            note = "empty source"
        elif p.capped:
            note = (f"UNMET: needs {p.share * total / p.available:.2f} epochs > max_epochs {max_epochs:g}; "
                    f"capped at {max_epochs:g}")
        rows.append({"source": p.name, "prefix": p.prefix, "available_tokens": p.available,
                     "target_share": round(p.share, 6), "realised_share": round(realised, 6),
                     "tokens": int(round(p.tokens)), "epochs": round(p.epochs, 4),
                     "subsampled_fraction": round(p.epochs, 4) if p.epochs < 1 else None, "status": note})
    blend: list = []
    for r in rows:
        if r["realised_share"] > 0:
            blend += [r["realised_share"], r["prefix"]]
    return {"requested_total_tokens": int(total), "planned_total_tokens": int(round(drawn)),
            "max_epochs": max_epochs, "shares_normalised_from": round(share_sum, 6),
            "unmet": [r["source"] for r in rows if r["status"] != "ok"], "sources": rows, "blend": blend}


def _water_fill(plans: list[SourcePlan], total: float, max_epochs: float) -> None:
    """Give each source share*total tokens, capping at max_epochs and passing the excess on."""
    free = list(plans)
    remaining = total
    while free:
        weight = sum(p.share for p in free)
        over = [p for p in free if p.share / weight * remaining > p.available * max_epochs]
        if not over:
            for p in free:
                p.tokens = p.share / weight * remaining
            return
        for p in over:
            p.tokens, p.capped = p.available * max_epochs, True
            remaining -= p.tokens
            free.remove(p)


def format_mix(report: dict) -> str:
    lines = [f"{'source':<12}{'available':>14}{'target':>8}{'realised':>9}{'tokens':>14}{'epochs':>8}  status"]
    for r in report["sources"]:
        lines.append(f"{r['source']:<12}{r['available_tokens']:>14,}{r['target_share']:>8.3f}"
                     f"{r['realised_share']:>9.3f}{r['tokens']:>14,}{r['epochs']:>8.2f}  {r['status']}")
    lines.append(f"planned {report['planned_total_tokens']:,} of {report['requested_total_tokens']:,} "
                 f"requested tokens (max_epochs {report['max_epochs']:g})")
    if report["unmet"]:
        lines.append(f"shares NOT met for: {', '.join(report['unmet'])}")
    return "\n".join(lines) + "\n"
