"""AdamW with GPT-3's weight-decay groups, and the warm-up + cosine learning-rate schedule.

The optimizer state is saved through torch.distributed.checkpoint keyed by parameter FQN (not by
position), so a checkpoint written by one parallel layout loads into another.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn as nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.checkpoint.stateful import Stateful

from hyperclova.config import Config
from hyperclova.train.engine import from_checkpoint_keys, to_checkpoint_keys


def lr_at(step: int, base_lr: float, warmup: int, decay_steps: int, min_ratio: float) -> float:
    """Linear warm-up to base_lr over `warmup` steps, then cosine decay to base_lr*min_ratio at
    `decay_steps`, flat after. Steps count from 1 (the first optimizer step)."""
    min_lr = base_lr * min_ratio
    if warmup > 0 and step <= warmup:
        return base_lr * step / warmup
    if step >= decay_steps:
        return min_lr
    progress = (step - warmup) / max(1, decay_steps - warmup)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def schedule_for(cfg: Config):
    """The lr schedule of a config as a function of the step."""
    s = cfg.schedule
    decay = s.decay_steps if s.decay_steps is not None else cfg.train.steps
    return functools.partial(lr_at, base_lr=cfg.lr, warmup=s.warmup_steps, decay_steps=decay,
                             min_ratio=s.min_lr_ratio)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    # GPT-3 decays matrices and embeddings only; biases and LayerNorm parameters are not decayed.
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def build_adamw(model: nn.Module, cfg: Config, device_type: str) -> torch.optim.AdamW:
    o = cfg.optim
    fused = o.fused if o.fused is not None else device_type in ("cuda", "cpu")
    return torch.optim.AdamW(
        _param_groups(model, o.weight_decay), lr=cfg.lr, betas=(o.beta1, o.beta2), eps=o.eps,
        fused=fused, foreach=None if fused else True,
    )


class Optimizers(Stateful):
    """One AdamW per model part (pipeline stages may hold several), checkpointed by FQN, over
    the trainable parameters only: a part with none (a frozen pipeline stage when tuning) has no
    optimizer and no state."""

    _OPTS = StateDictOptions(flatten_optimizer_state_dict=True)

    def __init__(self, model_parts: list[nn.Module], cfg: Config, device_type: str):
        self.model_parts = [m for m in model_parts if any(p.requires_grad for p in m.parameters())]
        self.optimizers = [build_adamw(m, cfg, device_type) for m in self.model_parts]
        # Fused AdamW skips a step on the device when told to (found_inf, as GradScaler uses it:
        # no update, no state change, the step count undone), so the host never has to wait.
        self.skips_on_device = all(o.defaults.get("fused") for o in self.optimizers)

    def set_lr(self, lr: float) -> None:
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr

    def step(self, skip: torch.Tensor | None = None) -> None:
        """One optimizer step; none where the device flag `skip` is true (non-finite step)."""
        if skip is not None and not self.skips_on_device:
            if bool(skip):  # an unfused optimizer: the host has to look
                return
            skip = None
        for opt in self.optimizers:
            if skip is not None:
                opt.found_inf = skip.float()
            opt.step()

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    # A pipeline's last stage holds its own copy of the tied output weight (`lm_head.weight`); its
    # state is stored under the embedding's key so checkpoints load across layouts.
    def state_dict(self) -> dict:
        return {k: v for m, o in zip(self.model_parts, self.optimizers)
                for k, v in to_checkpoint_keys(m, get_optimizer_state_dict(m, o, options=self._OPTS)).items()}

    def load_state_dict(self, state_dict: dict) -> None:
        for m, o in zip(self.model_parts, self.optimizers):
            set_optimizer_state_dict(m, o, optim_state_dict=from_checkpoint_keys(m, state_dict),
                                     options=self._OPTS)
