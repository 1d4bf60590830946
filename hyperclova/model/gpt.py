"""A GPT-3-style decoder in plain PyTorch (HyperCLOVA's architecture).

Token + learned position embeddings, pre-LayerNorm blocks (causal self-attention through SDPA and
a 4*d GeLU MLP), a final LayerNorm and an output projection tied to the token embedding.

This file knows nothing of parallelism. Two things make it easy to parallelise from outside:
- blocks live in `layers`, an nn.ModuleDict keyed by the global layer index, so a pipeline stage
  keeps its subset and its checkpoint keys stay those of the full model;
- the embedding (`tok_emb`, `pos_emb`) and the head (`ln_f`, `lm_head`) may be set to None: a
  stage without embedding takes hidden states, a stage without head returns them;
- `skip_head = True` makes forward stop after the final LayerNorm, so a caller can apply the output
  projection itself (the engine fuses it with the loss, docs/parallel.md);
- `input_adapter`, when set, computes the token embeddings from the ids and `tok_emb` (P-tuning
  puts learned prompt embeddings at some positions, hyperclova/tune/ptuning.py);
- initialisation is per parameter: each one is drawn from its own generator, seeded by the run's
  seed and the parameter's name, so a shard of it can be initialised alone, exactly.
Attention infers the number of heads from the `qkv` output, so a column-sharded `qkv` (tensor
parallel) simply runs with its local heads: the weight rows are laid out head by head.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from hyperclova.model.config import ModelConfig


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
        self.skip_head = False  # True: forward returns the final LayerNorm's output
        self.input_adapter: nn.Module | None = None  # (ids, tok_emb) -> token embeddings
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
            tok = self.tok_emb(x) if self.input_adapter is None else self.input_adapter(x, self.tok_emb)
            x = self.drop(tok + self.pos_emb(positions))
        for key, layer in self.layers.items():
            x = layer(x, attn_mask, caches[key] if caches else None, start)
        if self.ln_f is not None:
            x = self.ln_f(x)
        if self.lm_head is not None and not self.skip_head:
            x = self.lm_head(x)
        return x

    def init_param(self, name: str, t: torch.Tensor, generator: torch.Generator | None) -> None:
        """Fill `t` with the initial value of this model's parameter `name` (a plain-model FQN):
        GPT-2/3's N(0, init_std), residual output projections scaled by 1/sqrt(2 * n_layers);
        biases zero, LayerNorms identity."""
        std = self.cfg.init_std
        module, _, kind = name.rpartition(".")
        if module.endswith(("ln_1", "ln_2")) or module == "ln_f":
            nn.init.ones_(t) if kind == "weight" else nn.init.zeros_(t)
        elif kind == "bias":
            nn.init.zeros_(t)
        elif module.endswith(("attn.proj", "mlp.fc2")):
            nn.init.normal_(t, 0.0, std / math.sqrt(2 * self.cfg.n_layers), generator=generator)
        elif module.endswith(("attn.qkv", "mlp.fc1")) or module in ("tok_emb", "pos_emb", "lm_head"):
            nn.init.normal_(t, 0.0, std, generator=generator)
        else:
            raise ValueError(f"no initialiser for parameter {name!r}: a module added by a model "
                             "transform must define param_init(name, tensor, generator)")

    @torch.no_grad()
    def init_weights(self, seed: int) -> None:
        """Initialise every parameter in place, deterministically per seed (see init_parameter)."""
        for mod_name, module in self.named_modules():
            for pname, p in module.named_parameters(recurse=False):
                fqn = f"{mod_name}.{pname}" if mod_name else pname
                if module is self.lm_head and self.tok_emb is not None:
                    continue  # tied: initialised as the embedding
                init_parameter(self, module, fqn, pname, p, seed)


TIED_TO = {"lm_head.weight": "tok_emb.weight"}  # a stage's own copy of the tied output weight


def parameter_seed(seed: int, name: str) -> int:
    """The seed of parameter `name`'s generator: the run's seed mixed with a hash of the name."""
    name = TIED_TO.get(name, name)
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % 2**63


def init_parameter(model: GPT, module: nn.Module, fqn: str, local_name: str, t: torch.Tensor,
                   seed: int) -> None:
    """Fill `t`, the whole value of parameter `fqn` (held by `module` as `local_name`), from its
    own generator. A module added by a model transform (an adapter) initialises its parameters
    through a `param_init(local_name, tensor, generator)` method."""
    generator = torch.Generator(device=t.device).manual_seed(parameter_seed(seed, fqn))
    if hasattr(module, "param_init"):
        module.param_init(local_name, t, generator)
    else:
        model.init_param(TIED_TO.get(fqn, fqn), t, generator)


def build_model(cfg: ModelConfig, device: torch.device | str = "cpu", seed: int | None = None) -> GPT:
    """A plain single-device model: built on the meta device (no memory), then materialised on
    `device` and initialised (from the global torch RNG when `seed` is None). The training
    engine builds every layout, one device included, through hyperclova.parallel.build instead;
    both give the same weights for the same seed."""
    with torch.device("meta"):
        model = GPT(cfg)
    model.to_empty(device=device)
    model.tie_weights()
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()).item())
    model.init_weights(seed)
    return model


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # shared (tied) parameters count once
