"""The model's shape: the one dataclass the plain GPT is built from (`hyperclova.config` names it
as the `model` section of a run's config)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class ModelConfig:
    preset: Optional[str] = None  # name from the size table this was filled from, informational
    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    vocab_size: int = 64000
    seq_len: int = 2048
    dropout: float = 0.0
    ln_eps: float = 1e-5
    init_std: float = 0.02

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def d_ff(self) -> int:
        return 4 * self.d_model
