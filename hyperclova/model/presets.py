"""The HyperCLOVA size table (paper Table 2) plus a `tiny` preset for CPU tests and the demo.

    python -m hyperclova.model.presets     # exact parameter count of every preset (meta device)
"""
from __future__ import annotations

from hyperclova.model.config import ModelConfig

# name: (n_layers, d_model, n_heads, lr); d_head = d_model / n_heads, seq 2048, vocab 64,000
TABLE_2 = {
    "137m": (12, 768, 16, 6.0e-4),
    "350m": (24, 1024, 16, 3.0e-4),
    "760m": (24, 1536, 16, 2.5e-4),
    "1.3b": (24, 2048, 16, 2.0e-4),
    "6.9b": (32, 4096, 32, 1.2e-4),
    "13b": (40, 5120, 40, 1.0e-4),
    "39b": (48, 8192, 64, 0.8e-4),
    "82b": (64, 10240, 80, 0.6e-4),
}
NOMINAL = {"137m": 137e6, "350m": 350e6, "760m": 760e6, "1.3b": 1.3e9, "6.9b": 6.9e9,
           "13b": 13e9, "39b": 39e9, "82b": 82e9}

PRESETS: dict[str, ModelConfig] = {
    name: ModelConfig(preset=name, n_layers=L, d_model=d, n_heads=h, vocab_size=64000, seq_len=2048)
    for name, (L, d, h, _) in TABLE_2.items()
}
PRESETS["tiny"] = ModelConfig(preset="tiny", n_layers=4, d_model=128, n_heads=4, vocab_size=4096,
                              seq_len=256)
PRESET_LR = {name: lr for name, (*_, lr) in TABLE_2.items()} | {"tiny": 1e-3}
DEFAULT_LR = 3e-4  # a custom (preset-less) model


def preset_lr(preset: str | None) -> float:
    """Table 2's learning rate of a preset (DEFAULT_LR for a custom model)."""
    return PRESET_LR.get(preset or "", DEFAULT_LR)


def count_params(cfg: ModelConfig) -> int:
    """Exact parameter count, from a model instantiated on the meta device (no memory used)."""
    import torch

    from hyperclova.model.gpt import GPT, num_params

    with torch.device("meta"):
        return num_params(GPT(cfg))


def main() -> None:
    print(f"{'preset':>6} {'layers':>6} {'d_model':>7} {'heads':>5} {'d_head':>6} {'lr':>8} "
          f"{'params':>15} {'vs name':>8}")
    for name, cfg in PRESETS.items():
        n = count_params(cfg)
        rel = f"{(n / NOMINAL[name] - 1) * 100:+.1f}%" if name in NOMINAL else "-"
        print(f"{name:>6} {cfg.n_layers:>6} {cfg.d_model:>7} {cfg.n_heads:>5} {cfg.d_head:>6} "
              f"{PRESET_LR[name]:>8.1e} {n:>15,} {rel:>8}")


if __name__ == "__main__":
    main()
