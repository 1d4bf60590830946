"""Per-GPU memory of a layout: parameters, gradients, optimizer state and activations.

Parameter counts come from the model itself (built on the meta device), split by the engine's
own rules (hyperclova/parallel/layout.py for stages, TP_PLAN of hyperclova/parallel/tensor.py for
tensor parallelism); the dry run checks them against the real build path (tests/plan). Activations
follow Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models",
Section 4 (bytes per layer, 16-bit activations, s=seq, b=micro-batch, h=d_model, a=heads, t=tp):
    no parallelism           s b h (34 + 5 a s / h)
    tensor parallel          s b h (10 + 24/t + 5 a s / (h t))
    tensor + sequence par.   s b h / t (34 + 5 a s / h)
    selective recompute      drops the 5 a s / h attention-score term
    full recompute           2 s b h (input of each layer; / t with sequence parallel)
SDPA's flash kernels never store the a s^2 scores either, so `flash=True` drops that term too.
The last stage adds what the engine's output layer and loss keep (`head_activation_bytes`): they
run in chunks of tokens (hyperclova/parallel/loss.py), so the fp32 logits are one chunk's, not
Korthikanti's whole 4 s b V / t.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import lru_cache

import torch

from hyperclova.config import ModelConfig
from hyperclova.model.presets import count_params
from hyperclova.parallel.layout import Layout
from hyperclova.parallel.tensor import TP_PLAN
from hyperclova.plan.hardware import DEFAULT_MEMORY, MemoryModel

DEFAULT_LOSS_CHUNK = 1024  # train.loss_chunk_tokens


@dataclass(frozen=True)
class ModelStats:
    """Exact parameter counts of the pieces a rank can hold, read off the meta-device model."""

    cfg: ModelConfig
    total: int  # count_params: the whole model, tied head counted once
    layer_split: int  # per block: parameters divided by TP (column weights+biases, row weights)
    layer_replicated: int  # per block: LayerNorms and row-parallel biases, on every TP rank
    tok_emb: int  # vocab-parallel token embedding (also the tied head)
    pos_emb: int
    final_norm: int

    def layer_params(self, tp: int) -> int:
        return self.layer_split // tp + self.layer_replicated


def _stats(cfg: ModelConfig) -> ModelStats:
    return _stats_cached(tuple(sorted(asdict(cfg).items())))


@lru_cache(maxsize=64)  # keyed by the config's fields: ModelConfig itself is not hashable
def _stats_cached(key: tuple) -> ModelStats:
    from hyperclova.model.gpt import GPT

    cfg = ModelConfig(**dict(key))

    with torch.device("meta"):
        one = GPT(replace(cfg, n_layers=1))
    split = replicated = 0
    for name, p in one.layers["0"].named_parameters():
        module, kind = name.rsplit(".", 1)
        plan = TP_PLAN.get(module)
        if plan == "colwise" or (plan == "rowwise" and kind == "weight"):
            split += p.numel()
        else:
            replicated += p.numel()
    return ModelStats(cfg=cfg, total=count_params(cfg), layer_split=split, layer_replicated=replicated,
                      tok_emb=one.tok_emb.weight.numel(), pos_emb=one.pos_emb.weight.numel(),
                      final_norm=sum(p.numel() for p in one.ln_f.parameters()))


def model_stats(cfg: ModelConfig) -> ModelStats:
    stats = _stats(cfg)
    # the pieces must add up to the model's own count: guards TP_PLAN against model changes
    pieces = stats.layer_split + stats.layer_replicated
    assert stats.total == cfg.n_layers * pieces + stats.tok_emb + stats.pos_emb + stats.final_norm
    return stats


def rank_params(stats: ModelStats, lay: Layout, pp_rank: int) -> int:
    """Parameters held by one rank of pipeline stage `pp_rank` (before ZeRO/FSDP sharding)."""
    layers = sum(len(chunk) for chunk in lay.rank_layers(pp_rank, stats.cfg.n_layers))
    n = layers * stats.layer_params(lay.tp)
    if lay.has_embedding(pp_rank):
        n += stats.tok_emb // lay.tp + stats.pos_emb
    if lay.has_head(pp_rank):
        n += stats.final_norm
        if not lay.has_embedding(pp_rank):
            n += stats.tok_emb // lay.tp  # the head's own copy of the tied embedding
    return n


@dataclass(frozen=True)
class MemoryBreakdown:
    params: float
    grads: float
    optimizer: float
    compute_copy: float  # bf16 weights gathered for compute
    grad_accum: float  # unsharded gradients kept between micro-batches under FSDP
    activations: float
    reserve: float

    @property
    def total(self) -> float:
        return (self.params + self.grads + self.optimizer + self.compute_copy + self.grad_accum
                + self.activations + self.reserve)


def layer_activation_bytes(cfg: ModelConfig, lay: Layout, flash: bool = True,
                           recompute: str | None = None) -> float:
    """Activation bytes one layer keeps for one micro-batch until its backward (Korthikanti)."""
    s, b, h, a, t = cfg.seq_len, lay.micro_batch_size, cfg.d_model, cfg.n_heads, lay.tp
    recompute = recompute or lay.recompute
    sbh = s * b * h
    if recompute == "full":
        return 2 * sbh / (t if lay.sequence_parallel else 1)
    scores = 0.0 if (flash or recompute == "selective") else 5 * a * s / h
    if lay.sequence_parallel:
        return sbh / t * (34 + scores)
    return sbh * (10 + 24 / t + scores / t)


def inflight_layers(cfg: ModelConfig, lay: Layout, pp_rank: int, n_micro: int) -> float:
    """Layer-microbatches whose activations stage `pp_rank` holds at its peak (1F1B warm-up)."""
    p, v = lay.pp, lay.vpp
    per_chunk = cfg.n_layers / (p * v)
    if v == 1:
        chunks = min(p - pp_rank, n_micro)
    else:  # Megatron's interleaved warm-up: 2 (p - r - 1) + (v - 1) p chunks, plus the current one
        chunks = min(2 * (p - pp_rank - 1) + (v - 1) * p + 1, n_micro * v)
    return chunks * per_chunk


def head_activation_bytes(cfg: ModelConfig, lay: Layout, loss_chunk: int = DEFAULT_LOSS_CHUNK) -> float:
    """What the last stage's final LayerNorm, output layer and loss hold for one micro-batch at
    their peak (bf16 training): the LayerNorm's 16-bit input (sequence-sharded under SP); the
    whole sequence's 16-bit hidden states and their gradient, and two fp32 numbers per token;
    one chunk's fp32 logits, turned into their gradient in place, and its 16-bit copy (6 bytes
    per logit); of this rank's output-weight slice a 16-bit copy, the fp32 gradient and one
    chunk's contribution to it (10 bytes per weight). `loss_chunk` 0 is one chunk per
    micro-batch: every token's logits at once. Checked against the loss itself in
    tests/plan/test_memory.py."""
    s, b, h, t, v = cfg.seq_len, lay.micro_batch_size, cfg.d_model, lay.tp, cfg.vocab_size
    tokens = s * b
    chunk = tokens if loss_chunk <= 0 else min(loss_chunk, tokens)
    ln_input = 2 * tokens * h / (t if lay.sequence_parallel else 1)
    return ln_input + 4 * tokens * h + 8 * tokens + 6 * chunk * v / t + 10 * v * h / t


def activation_bytes(cfg: ModelConfig, lay: Layout, pp_rank: int, n_micro: int,
                     flash: bool = True, loss_chunk: int = DEFAULT_LOSS_CHUNK) -> float:
    layers = inflight_layers(cfg, lay, pp_rank, n_micro)
    total = layers * layer_activation_bytes(cfg, lay, flash)
    if lay.recompute == "full":  # one layer's working set while it is recomputed
        total += layer_activation_bytes(cfg, lay, flash, recompute="none")
    if lay.has_head(pp_rank):
        total += head_activation_bytes(cfg, lay, loss_chunk)
    return total


def memory_breakdown(stats: ModelStats, lay: Layout, pp_rank: int, n_micro: int,
                     mem: MemoryModel = DEFAULT_MEMORY, flash: bool = True,
                     loss_chunk: int = DEFAULT_LOSS_CHUNK) -> MemoryBreakdown:
    n = rank_params(stats, lay, pp_rank)
    shard = lay.dp_shard
    accum = 0.0
    if shard > 1:
        # hyperclova.parallel keeps a pipeline stage's weights gathered for the whole step, and
        # so does zero_stage 2; with zero_stage 3 FSDP2 gathers a block at a time + prefetch
        whole = lay.pp > 1 or lay.zero_stage == 2
        copy = (n if whole else 2 * stats.layer_params(lay.tp)) * mem.compute_copy_bytes
        if n_micro > 1:  # gradients reduce once per step: earlier micro-batches accumulate them
            accum = n * mem.grad_bytes  # unsharded (FSDP2 no-sync), in the fp32 reduce dtype
    else:
        copy = n * mem.compute_copy_bytes
    return MemoryBreakdown(
        params=n * mem.param_bytes / shard, grads=n * mem.grad_bytes / shard,
        optimizer=n * mem.optim_bytes / shard, compute_copy=copy, grad_accum=accum,
        activations=activation_bytes(stats.cfg, lay, pp_rank, n_micro, flash, loss_chunk),
        reserve=mem.reserve)


def peak_memory(stats: ModelStats, lay: Layout, n_micro: int, mem: MemoryModel = DEFAULT_MEMORY,
                flash: bool = True, loss_chunk: int = DEFAULT_LOSS_CHUNK) -> tuple[int, MemoryBreakdown]:
    """The fullest pipeline stage and its breakdown (first stage: most in flight; last: logits)."""
    stages = {0, lay.pp - 1}
    rows = [(r, memory_breakdown(stats, lay, r, n_micro, mem, flash, loss_chunk))
            for r in sorted(stages)]
    return max(rows, key=lambda rb: rb[1].total)
