"""Reports over result files: a Markdown table shaped like HyperCLOVA's Table 3 (one row per
checkpoint, one column per task metric, mean ± std over runs) and a plot of a score against model
size or training step."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Sequence

from hyperclova.errors import UserError

# Column order and headings of Table 3; other tasks follow in the order first seen.
KNOWN = [("nsmc", "accuracy", "NSMC (Acc)"), ("korquad", "exact_match", "KorQuAD (EM)"),
         ("korquad", "f1", "KorQuAD (F1)"), ("aihub_koen", "bleu", "AI Hub Ko→En (BLEU)"),
         ("aihub_enko", "bleu", "AI Hub En→Ko (BLEU)"), ("ynat", "macro_f1", "YNAT (F1)"),
         ("klue_sts", "f1", "KLUE-STS (F1)")]
SECONDARY = {"accuracy", "pearson", "bits_per_byte"}  # shown only when it is a task's only metric


def load_results(paths: Sequence[str]) -> list[dict]:
    out = []
    for p in paths:
        try:
            res = json.loads(Path(p).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"{p}: not a readable result file ({e})") from None
        if not isinstance(res, dict) or "metrics" not in res or "task" not in res:
            raise UserError(f"{p}: not a hyperclova.eval result file (no 'task'/'metrics')")
        res["_path"] = str(p)
        out.append(res)
    return out


def model_label(res: dict) -> str:
    m = res.get("model", {})
    size = m.get("preset") or _human(m.get("params", 0))
    step = res.get("step")
    return f"{size} @ step {step}" if step is not None else f"{size} ({res.get('checkpoint', '?')})"


def columns(results: list[dict]) -> list[tuple[str, str, str]]:
    cols = []
    present = {(r["task"], k) for r in results for k in r["metrics"]}
    for task, key, head in KNOWN:
        if (task, key) in present:
            cols.append((task, key, head))
    for r in results:
        keys = list(r["metrics"])
        for key in keys:
            if any(c[:2] == (r["task"], key) for c in cols) or (r["task"], key) in {k[:2] for k in KNOWN}:
                continue
            if key in SECONDARY and len(keys) > 1:
                continue
            cols.append((r["task"], key, f"{r['task']} ({key})"))
    return cols


def markdown_table(results: list[dict], baseline: bool = False) -> str:
    cols = columns(results)
    rows: dict[str, dict] = {}
    for r in results:
        rows.setdefault(model_label(r), {})[r["task"]] = r
    lines = ["| model | " + " | ".join(h for _, _, h in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for label, by_task in rows.items():
        cells = []
        for task, key, _ in cols:
            m = by_task.get(task, {}).get("metrics", {}).get(key)
            cells.append(_cell(m) if m else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if baseline:
        cells = []
        for task, key, _ in cols:
            base = next((r.get("majority_baseline", {}) for r in results if r["task"] == task), {})
            cells.append(f"{base[key]:.2f}" if key in base else "")
        lines.append("| majority class | " + " | ".join(cells) + " |")
    notes = []
    for r in results:
        p = r.get("protocol") or {}
        if p.get("prompts_with_dropped_demos") or p.get("queries_too_long"):
            notes.append(f"{r['task']} ({model_label(r)}): {p.get('prompts_with_dropped_demos', 0)} "
                         f"of {p.get('prompts', 0)} prompts dropped {p.get('demos_dropped', 0)} "
                         f"demonstrations to fit; {p.get('queries_too_long', 0)} queries did not fit")
    table = "\n".join(lines) + "\n"
    if notes:
        table += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return table


def _cell(m: dict) -> str:
    mean, std, n = m["mean"], m.get("std", 0.0), m.get("n", 1)
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    return f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"


def _human(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.1f}B"
    if n >= 1e6:
        return f"{n / 1e6:.0f}M" if n >= 1e7 else f"{n / 1e6:.1f}M"
    return f"{n / 1e3:.0f}K"


def plot(results: list[dict], task: str, metric: str, x: str, output: str) -> None:
    """Score (mean ± std) against `x` = "params" or "step", one line per tokenizer type."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts: dict[str, list] = {}
    for r in results:
        m = r["metrics"].get(metric)
        if r["task"] != task or m is None:
            continue
        xv = r.get("model", {}).get("params") if x == "params" else r.get("step")
        if xv is None:
            raise UserError(f"{r['_path']}: has no {x} to plot against")
        pts.setdefault(r.get("model", {}).get("tokenizer_type", "?"), []).append(
            (xv, m["mean"], m.get("std", 0.0)))
    if not pts:
        raise UserError(f"no result for task {task!r} with metric {metric!r}")
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in sorted(pts.items()):
        values.sort()
        xs, ys, es = zip(*values)
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=label)
    if x == "params":
        ax.set_xscale("log")
    ax.set_xlabel("parameters" if x == "params" else "training step")
    ax.set_ylabel(f"{task} {metric}")
    ax.grid(alpha=0.3)
    ax.legend(title="tokenizer")
    fig.tight_layout()
    fig.savefig(output, dpi=120)
    plt.close(fig)


def step_of(path: str) -> int | None:
    m = re.search(r"step_(\d+)", path)
    return int(m.group(1)) if m else None
