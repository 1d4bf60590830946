"""LoRA (Hu et al. 2021): a low-rank update beside a frozen linear layer.

    y = x W^T + b + (alpha / r) * dropout(x) A^T B^T        A: (r, d_in), B: (d_out, r)

`add_lora` turns chosen linear layers of every block (`qkv`, `proj`, `fc1`, `fc2`) into
`LoRALinear` in place, on the meta model (a model transform of the engine): the layer keeps its
own `weight` and `bias` under their names, so the base checkpoint loads unchanged, and gains
`lora_A` and `lora_B`. A is drawn like nn.Linear's default (Kaiming-uniform), B starts at zero, so
a fresh adapter leaves the model's output exactly as it was. Tensor parallelism splits A and B to
match their layer (hyperclova/parallel/tensor.py). `merge_lora_` folds the update into the weight.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from hyperclova.config import LoraConfig
from hyperclova.model.gpt import GPT

# Config names -> the linear layer's path inside a block.
TARGET_PATHS = {"qkv": "attn.qkv", "proj": "attn.proj", "fc1": "mlp.fc1", "fc2": "mlp.fc2"}


class LoRAFactor(nn.Module):
    """One factor of the update, a (rows, cols) matrix: A Kaiming-uniform, B zero."""

    def __init__(self, rows: int, cols: int, zero: bool):
        super().__init__()
        self.zero = zero
        self.weight = nn.Parameter(torch.empty(rows, cols))

    def param_init(self, name: str, t: torch.Tensor, generator: torch.Generator) -> None:
        if self.zero:
            nn.init.zeros_(t)
        else:  # nn.Linear's default: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))
            nn.init.kaiming_uniform_(t, a=math.sqrt(5), generator=generator)


class LoRALinear(nn.Linear):
    """nn.Linear plus a low-rank update (made from an existing nn.Linear by `adapt`)."""

    lora_A: LoRAFactor
    lora_B: LoRAFactor

    @classmethod
    def adapt(cls, linear: nn.Linear, rank: int, alpha: float, dropout: float) -> "LoRALinear":
        linear.__class__ = cls
        linear.lora_A = LoRAFactor(rank, linear.in_features, zero=False)
        linear.lora_B = LoRAFactor(linear.out_features, rank, zero=True)
        # Identity, not Dropout(0): DTensor's random ops are CUDA-only (tensor parallel on CPU).
        linear.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        linear.rank, linear.scale = rank, alpha / rank
        return linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = F.linear(F.linear(self.lora_dropout(x), self.lora_A.weight), self.lora_B.weight)
        return F.linear(x, self.weight, self.bias) + update * self.scale

    def delta(self) -> torch.Tensor:
        """The update of the weight, scale * B @ A, (d_out, d_in)."""
        return (self.lora_B.weight.float() @ self.lora_A.weight.float()) * self.scale

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, scale={self.scale:g}"


def add_lora(model: GPT, cfg: LoraConfig) -> None:
    """Put LoRA on `cfg.targets` of every block of `model` (in place)."""
    for block in model.layers.values():
        for name in cfg.targets:
            LoRALinear.adapt(block.get_submodule(TARGET_PATHS[name]), cfg.rank, cfg.alpha,
                             cfg.dropout)


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


@torch.no_grad()
def merge_lora_(model: nn.Module) -> None:
    """Fold every adapter into its layer's weight and turn the layer back into nn.Linear."""
    for m in lora_layers(model).values():
        m.weight += m.delta().to(m.weight.dtype)
        del m.lora_A, m.lora_B, m.lora_dropout, m.rank, m.scale
        m.__class__ = nn.Linear
