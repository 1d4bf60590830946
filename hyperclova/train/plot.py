"""Loss curves from a run's metrics.jsonl, as a PNG."""
from __future__ import annotations

import json
from pathlib import Path

from hyperclova.errors import UserError


def read_metrics(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """(step, loss) series by kind ("train", "valid"); a resumed run's repeated steps keep the last."""
    series: dict[str, dict[int, float]] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UserError(f"cannot read metrics file {path}: {e.strerror}") from None
    for n, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            series.setdefault(row["kind"], {})[int(row["step"])] = float(row["loss"])
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{path}:{n}: not a metrics record") from None
    return {kind: sorted(points.items()) for kind, points in series.items()}


def plot_metrics(path: str | Path, output: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = read_metrics(path)
    if not series.get("train"):
        raise UserError(f"{path} has no training steps to plot")
    fig, ax = plt.subplots(figsize=(7, 4))
    for kind, style in (("train", "-"), ("valid", "o-")):
        if series.get(kind):
            steps, losses = zip(*series[kind])
            ax.plot(steps, losses, style, label=kind, markersize=4)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss")
    ax.set_title(f"hyperclova: {Path(path).parent.name}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output
