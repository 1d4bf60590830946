"""A GPT-3-style decoder in plain PyTorch (HyperCLOVA's architecture).

Token + learned position embeddings, pre-LayerNorm blocks (causal self-attention through SDPA and
a 4*d GeLU MLP), a final LayerNorm and an output projection tied to the token embedding.

This file knows nothing of parallelism. Two things make it easy to parallelise from outside:
- blocks live in `layers`, an nn.ModuleDict keyed by the global layer index, so a pipeline stage
  keeps its subset and its checkpoint keys stay those of the full model;
- the embedding (`tok_emb`, `pos_emb`) and the head (`ln_f`, `lm_head`) may be set to None: a
  stage without embedding takes hidden states, a stage without head returns them.
Attention infers the number of heads from the `qkv` output, so a column-sharded `qkv` (tensor
parallel) simply runs with its local heads: the weight rows are laid out head by head.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from hyperclova.config import ModelConfig


@dataclass
class KVCache:
    """Keys and values of one layer for incremental decoding, (batch, heads, max_len, d_head)."""

    k: torch.Tensor
    v: torch.Tensor

    def update(self, start: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = start + k.size(2)
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.d_head = cfg.d_head
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)  # rows: head 0 (q,k,v), head 1, ...
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x, attn_mask=None, cache: KVCache | None = None, start: int = 0):
        B, T, _ = x.shape
        qkv = self.qkv(x).view(B, T, -1, 3, self.d_head)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(dim=3))  # (B, H, T, d_head)
        if cache is not None:
            k, v = cache.update(start, k, v)
        # Causal masking: SDPA's is_causal aligns the mask top-left, which is right only when the
        # queries start at position 0; decoding with a cache passes an explicit mask instead.
        is_causal = attn_mask is None and start == 0 and T > 1
        if attn_mask is None and start > 0 and T > 1:
            attn_mask = torch.ones(T, k.size(2), dtype=torch.bool, device=x.device).tril(start)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0,
        )
        y = y.transpose(1, 2).reshape(B, T, -1)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.d_model, cfg.d_ff)
        self.fc2 = nn.Linear(cfg.d_ff, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.drop(self.fc2(F.gelu(self.fc1(x))))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, attn_mask=None, cache: KVCache | None = None, start: int = 0):
        x = x + self.attn(self.ln_1(x), attn_mask, cache, start)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.seq_len, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleDict({str(i): Block(cfg) for i in range(cfg.n_layers)})
        self.ln_f = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.tie_weights()

    def tie_weights(self) -> None:
        """Share the output projection with the token embedding (again after materialising)."""
        if self.tok_emb is not None and self.lm_head is not None:
            self.lm_head.weight = self.tok_emb.weight

    def forward(self, x, positions=None, attn_mask=None, caches=None, start: int = 0):
        """x: token ids (B, T), or hidden states (B, T, d) when this module has no embedding.

        positions: (B, T) or (T,) position ids, default start..start+T-1. attn_mask: boolean
        (B, 1, T, T_kv) where True means attend. caches: {layer key: KVCache} for decoding.
        Returns logits (B, T, vocab), or hidden states when this module has no head.
        """
        if self.tok_emb is not None:
            if positions is None:
                positions = torch.arange(start, start + x.size(1), device=x.device)
            x = self.drop(self.tok_emb(x) + self.pos_emb(positions))
        for key, layer in self.layers.items():
            x = layer(x, attn_mask, caches[key] if caches else None, start)
        if self.ln_f is not None:
            x = self.ln_f(x)
        if self.lm_head is not None:
            x = self.lm_head(x)
        return x

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """GPT-2/3 initialisation: N(0, init_std), residual output projections scaled by
        1/sqrt(2 * n_layers); biases zero, LayerNorms identity. Deterministic per seed."""
        std = self.cfg.init_std
        out_std = std / math.sqrt(2 * self.cfg.n_layers)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                if module is self.lm_head and self.tok_emb is not None:
                    continue  # tied: initialised as the embedding
                is_out = name.endswith(("attn.proj", "mlp.fc2"))
                nn.init.normal_(module.weight, 0.0, out_std if is_out else std, generator=generator)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, 0.0, std, generator=generator)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


def build_model(cfg: ModelConfig, device: torch.device | str = "cpu", seed: int | None = None) -> GPT:
    """Build on the meta device (no memory), then materialise on `device` and initialise."""
    with torch.device("meta"):
        model = GPT(cfg)
    model.to_empty(device=device)
    model.tie_weights()
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    model.init_weights(generator)
    return model


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # shared (tied) parameters count once
