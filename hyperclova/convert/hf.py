"""How our GPT maps onto Hugging Face's `GPT2LMHeadModel`: names, shapes, tensor layouts, config.

The architectures are the same network, so every tensor has exactly one counterpart:

    ours                          Hugging Face (GPT2LMHeadModel)
    tok_emb.weight                transformer.wte.weight   (lm_head.weight is tied to it)
    pos_emb.weight                transformer.wpe.weight
    layers.{i}.ln_1/ln_2.*        transformer.h.{i}.ln_1/ln_2.*
    layers.{i}.attn.qkv.*         transformer.h.{i}.attn.c_attn.*   (rows permuted, transposed)
    layers.{i}.attn.proj.*        transformer.h.{i}.attn.c_proj.*   (transposed)
    layers.{i}.mlp.fc1/fc2.*      transformer.h.{i}.mlp.c_fc/c_proj.* (transposed)
    ln_f.*                        transformer.ln_f.*

HF's Conv1D stores weights as (in, out), the transpose of nn.Linear. Our qkv rows are laid out head
by head ([h0 q,k,v][h1 q,k,v]...) so that tensor parallelism can cut whole heads; HF's c_attn
columns are [all q | all k | all v]. Both conversions are pure permutations: bit-exact both ways.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch

from hyperclova.config import ModelConfig
from hyperclova.errors import UserError

HF_PREFIX = "transformer."
TIED_KEY = "lm_head.weight"  # never stored by us: the token embedding is the output projection

# Exact (erf) GeLU, as in our model. GPT-2's own checkpoints use the tanh approximation.
EXACT_GELU = "gelu"
APPROX_GELU = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


class ConversionError(UserError, ValueError):
    """A checkpoint that cannot be converted; the message names the tensor or config key."""


# --- tensor layouts --------------------------------------------------------------------------


def qkv_to_hf(t: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Our qkv weight (3d, d) or bias (3d,), head by head, -> HF c_attn weight (d, 3d) or bias."""
    d_head = t.size(0) // (3 * n_heads)
    grouped = t.reshape(n_heads, 3, d_head, *t.shape[1:]).transpose(0, 1).reshape(t.shape)
    return grouped.t().contiguous() if t.dim() == 2 else grouped.contiguous()


def qkv_from_hf(t: torch.Tensor, n_heads: int) -> torch.Tensor:
    """HF c_attn weight (d, 3d) or bias (3d,) -> our head-by-head qkv weight (3d, d) or bias."""
    rows = t.t() if t.dim() == 2 else t
    d_head = rows.size(0) // (3 * n_heads)
    return rows.reshape(3, n_heads, d_head, *rows.shape[1:]).transpose(0, 1).reshape(rows.shape).contiguous()


def _transpose(t: torch.Tensor, n_heads: int) -> torch.Tensor:
    return t.t().contiguous()


def _same(t: torch.Tensor, n_heads: int) -> torch.Tensor:
    return t


@dataclass(frozen=True)
class TensorMap:
    """One tensor in both worlds: names, shapes, and the layout changes between them."""

    ours: str
    hf: str
    shape: tuple[int, ...]  # ours (nn.Linear / nn.Embedding / nn.LayerNorm)
    hf_shape: tuple[int, ...]  # Hugging Face's (Conv1D weights are transposed)
    to_hf: Callable[[torch.Tensor, int], torch.Tensor]
    from_hf: Callable[[torch.Tensor, int], torch.Tensor]


def _linear(ours: str, hf: str, d_in: int, d_out: int, qkv: bool = False) -> list[TensorMap]:
    """nn.Linear -> Conv1D: the weight is transposed; qkv rows (and bias) are also regrouped."""
    w_to, w_from = (qkv_to_hf, qkv_from_hf) if qkv else (_transpose, _transpose)
    b_to, b_from = (qkv_to_hf, qkv_from_hf) if qkv else (_same, _same)
    return [TensorMap(f"{ours}.weight", f"{hf}.weight", (d_out, d_in), (d_in, d_out), w_to, w_from),
            TensorMap(f"{ours}.bias", f"{hf}.bias", (d_out,), (d_out,), b_to, b_from)]


def _norm(ours: str, hf: str, d: int) -> list[TensorMap]:
    return [TensorMap(f"{ours}.{p}", f"{hf}.{p}", (d,), (d,), _same, _same) for p in ("weight", "bias")]


def layer_maps(cfg: ModelConfig, i: int) -> list[TensorMap]:
    d, o, h = cfg.d_model, f"layers.{i}", f"{HF_PREFIX}h.{i}"
    return [
        *_norm(f"{o}.ln_1", f"{h}.ln_1", d),
        *_linear(f"{o}.attn.qkv", f"{h}.attn.c_attn", d, 3 * d, qkv=True),
        *_linear(f"{o}.attn.proj", f"{h}.attn.c_proj", d, d),
        *_norm(f"{o}.ln_2", f"{h}.ln_2", d),
        *_linear(f"{o}.mlp.fc1", f"{h}.mlp.c_fc", d, cfg.d_ff),
        *_linear(f"{o}.mlp.fc2", f"{h}.mlp.c_proj", cfg.d_ff, d),
    ]


def tensor_groups(cfg: ModelConfig) -> list[list[TensorMap]]:
    """Every tensor, grouped so that a group is loaded at a time: embeddings, each layer, final LN.
    Streaming conversion holds one group in memory, so peak ~ largest tensor + one layer."""
    d = cfg.d_model
    tok, pos = (cfg.vocab_size, d), (cfg.seq_len, d)
    embed = [TensorMap("tok_emb.weight", f"{HF_PREFIX}wte.weight", tok, tok, _same, _same),
             TensorMap("pos_emb.weight", f"{HF_PREFIX}wpe.weight", pos, pos, _same, _same)]
    return [embed, *(layer_maps(cfg, i) for i in range(cfg.n_layers)), _norm("ln_f", f"{HF_PREFIX}ln_f", d)]


def all_maps(cfg: ModelConfig) -> list[TensorMap]:
    return [m for group in tensor_groups(cfg) for m in group]


def check_shape(name: str, got: tuple[int, ...], want: tuple[int, ...], where: str) -> None:
    if tuple(got) != tuple(want):
        raise ConversionError(f"{where}: tensor '{name}' has shape {tuple(got)}, expected {tuple(want)} "
                              "from the model config")


# --- refusing what we cannot represent -------------------------------------------------------

# Weight names that betray an architecture we do not have (checked on both sides).
_FOREIGN = [
    (re.compile(r"rotary|inv_freq|(^|\.)rope(\.|_|$)"), "rotary position embeddings"),
    (re.compile(r"gate|up_proj|(^|\.)w[13](\.|$)"), "a gated MLP (SwiGLU/GeGLU)"),
    (re.compile(r"q_proj|k_proj|v_proj|query_key_value"), "a different attention layout (not GPT-2)"),
]


def foreign_architecture(name: str) -> str | None:
    for pattern, what in _FOREIGN:
        if pattern.search(name):
            return what
    return None


def unexpected_key_error(name: str, where: str) -> ConversionError:
    what = foreign_architecture(name)
    if what:
        return ConversionError(f"{where}: tensor '{name}' implies {what}, which hyperclova's GPT-3 "
                               "architecture (learned positions, plain GeLU MLP, tied head) does not have")
    return ConversionError(f"{where}: unexpected tensor '{name}' (not part of hyperclova's GPT)")


# --- configs ---------------------------------------------------------------------------------


def hf_config(cfg: ModelConfig, bos_token_id: int | None = None, eos_token_id: int | None = None,
              dtype: str = "float32") -> dict:
    """config.json for transformers' GPT2LMHeadModel describing exactly our model."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.seq_len,
        "n_embd": cfg.d_model,
        "n_layer": cfg.n_layers,
        "n_head": cfg.n_heads,
        "n_inner": cfg.d_ff,
        "activation_function": EXACT_GELU,
        "layer_norm_epsilon": cfg.ln_eps,
        "initializer_range": cfg.init_std,
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "add_cross_attention": False,
        "tie_word_embeddings": True,
        "use_cache": True,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": None,
        "dtype": dtype,
    }


def generation_config(bos_token_id: int | None, eos_token_id: int | None) -> dict:
    return {"bos_token_id": bos_token_id, "eos_token_id": eos_token_id, "do_sample": False}


def _require(hf: dict, key: str, ok: Callable[[object], bool], want: str, path: str) -> None:
    if key in hf and not ok(hf[key]):
        raise ConversionError(f"{path}: '{key}' is {hf[key]!r}; hyperclova's GPT needs {want}")


def model_config_from_hf(hf: dict, path: str, allow_approx_gelu: bool = False) -> ModelConfig:
    """Our ModelConfig from an HF config.json dict; refuse architectures we cannot represent."""
    model_type = hf.get("model_type")
    if model_type != "gpt2":
        archs = hf.get("architectures")
        extra = ""
        if model_type in ("llama", "mistral", "qwen2", "gemma", "gpt_neox", "gptj", "phi", "falcon"):
            extra = " (rotary position embeddings" + (", gated MLP" if model_type in
                                                       ("llama", "mistral", "qwen2", "gemma") else "") + ")"
        raise ConversionError(f"{path}: model_type {model_type!r} (architectures {archs}){extra} is not "
                              "supported; only GPT-2-architecture models (model_type 'gpt2') convert")
    _require(hf, "tie_word_embeddings", lambda v: v is True, "tied input/output embeddings (true); "
             "untied heads are not supported", path)
    _require(hf, "scale_attn_weights", lambda v: v is True, "true (attention scaled by 1/sqrt(d_head))", path)
    _require(hf, "scale_attn_by_inverse_layer_idx", lambda v: v is False, "false", path)
    _require(hf, "add_cross_attention", lambda v: v is False, "false (decoder only)", path)
    act = hf.get("activation_function", "gelu_new")  # GPT2Config's default when absent
    if act != EXACT_GELU:
        if not (allow_approx_gelu and act in APPROX_GELU):
            hint = (" — pass --allow-approx-gelu to import anyway (our model then runs exact GeLU, "
                    "a small change that continued pre-training absorbs)") if act in APPROX_GELU else ""
            raise ConversionError(f"{path}: 'activation_function' is {act!r}; hyperclova's GPT uses exact "
                                  f"GeLU ('gelu'){hint}")
    d, n_heads = int(hf.get("n_embd", 768)), int(hf.get("n_head", 12))
    if d % n_heads:
        raise ConversionError(f"{path}: 'n_embd'={d} is not divisible by 'n_head'={n_heads}")
    n_inner = hf.get("n_inner")
    if n_inner is not None and int(n_inner) != 4 * d:
        raise ConversionError(f"{path}: 'n_inner' is {n_inner}; hyperclova's GPT needs 4 * n_embd = {4 * d}")
    return ModelConfig(
        preset=None,
        n_layers=int(hf.get("n_layer", 12)),
        d_model=d,
        n_heads=n_heads,
        vocab_size=int(hf.get("vocab_size", 50257)),
        seq_len=int(hf.get("n_positions", 1024)),
        dropout=float(hf.get("resid_pdrop", 0.1)),
        ln_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
        init_std=float(hf.get("initializer_range", 0.02)),
    )
