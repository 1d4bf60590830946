"""The seam between the training loop and the (possibly parallelised) model.

The loop only sees an `Engine`: the model parts held by this rank, a forward/backward over this
rank's share of a global batch (split into micro-batches), evaluation, gradient clipping and the
checkpointable model state. `build_engine` decides the layout from `cfg.parallel`; the single-device
engine here is the reference that every parallel layout must match.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    set_model_state_dict,
)
from torch.distributed.checkpoint.stateful import Stateful

from hyperclova.config import Config
from hyperclova.model.gpt import build_model

HEAD, EMB = "lm_head.weight", "tok_emb.weight"  # the output weight is tied to the embedding


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token loss; labels of -100 (masked positions) are ignored."""
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(0, 1), ignore_index=-100)


def head_only(part: nn.Module) -> bool:
    """A pipeline stage with the output projection but not the embedding: its `lm_head.weight` is
    an untied copy of the embedding."""
    return getattr(part, "lm_head", None) is not None and getattr(part, "tok_emb", None) is None


def to_checkpoint_keys(part: nn.Module, sd: dict) -> dict:
    """Store a head-only stage's output weight (and its optimizer state) under the embedding's
    key, so every layout writes and reads the same entry."""
    return {k.replace(HEAD, EMB): v for k, v in sd.items()} if head_only(part) else sd


def from_checkpoint_keys(part: nn.Module, sd: dict) -> dict:
    return {k.replace(EMB, HEAD): v for k, v in sd.items()} if head_only(part) else sd


class ModelState(Stateful):
    """Model weights of all parts on this rank, keyed by the plain model's FQNs; the tied output
    weight is never stored twice."""

    def __init__(self, model_parts: list[nn.Module]):
        self.model_parts = model_parts

    def state_dict(self) -> dict:
        sd = {}
        for m in self.model_parts:
            part = get_model_state_dict(m)
            if not head_only(m):
                part.pop(HEAD, None)
            sd.update(to_checkpoint_keys(m, part))
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        opts = StateDictOptions(strict=False)
        for m in self.model_parts:
            set_model_state_dict(m, from_checkpoint_keys(m, state_dict), options=opts)


@dataclass
class Layout:
    """Where this rank sits among the data-parallel replicas (for the data loader)."""

    dp_rank: int = 0
    dp_size: int = 1


class Engine:
    """Single-device engine: gradient accumulation over micro-batches, optional bf16 autocast.
    The parallel engine (hyperclova/parallel/engine.py) subclasses it for every other layout."""

    def __init__(self, model_parts: list[nn.Module], cfg: Config, device: torch.device,
                 autocast_dtype=None, layout: Layout | None = None):
        self.model_parts = model_parts
        self.model = model_parts[0]
        self.device = device
        self.cfg = cfg
        self.layout = layout or Layout()
        self.autocast_dtype = autocast_dtype

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def forward_backward(self, tokens: torch.Tensor, labels: torch.Tensor, n_micro: int) -> torch.Tensor:
        """Forward and backward over this rank's batch in `n_micro` equal micro-batches; gradients
        accumulate to those of the mean loss over the batch. Returns that mean loss (detached)."""
        total = torch.zeros((), device=self.device)
        for tok, lab in zip(tokens.chunk(n_micro), labels.chunk(n_micro)):
            with self._autocast():
                loss = cross_entropy(self.model(tok), lab) / n_micro
            loss.backward()
            total += loss.detach()
        return total

    @torch.no_grad()
    def eval_loss(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return cross_entropy(self.model(tokens), labels)

    def clip_grad_norm(self, max_norm: float) -> torch.Tensor:
        params = [p for m in self.model_parts for p in m.parameters()]
        return torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))

    def train(self, mode: bool = True) -> None:
        for m in self.model_parts:
            m.train(mode)

    def model_state(self) -> ModelState:
        return ModelState(self.model_parts)


def resolve_device(cfg: Config) -> torch.device:
    if cfg.train.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.train.device)


def autocast_dtype_for(cfg: Config, device: torch.device):
    dtype = cfg.train.dtype
    if dtype == "auto":
        dtype = "bf16" if device.type == "cuda" else "fp32"
    return torch.bfloat16 if dtype == "bf16" else None


def build_engine(cfg: Config, device: torch.device) -> Engine:
    """Build the model for this rank's place in the layout and wrap it in an Engine."""
    p = cfg.parallel
    if p.tp * p.pp * p.dp_replicate * p.dp_shard > 1:
        from hyperclova.parallel.engine import build_parallel_engine  # imports this module

        return build_parallel_engine(cfg, device)
    from hyperclova.parallel.recompute import apply_block_transforms

    model = build_model(cfg.model, device=device, seed=cfg.train.seed)
    apply_block_transforms(model, p.recompute, p.compile)
    return Engine([model], cfg, device, autocast_dtype_for(cfg, device))
