"""Enumerate layouts for a model on a cluster, estimate each, rank them.

TP stays inside a node; PP divides the layers; VPP divides each stage's layers (and, as the
interleaved schedule needs, the micro-batch count is a multiple of PP); the data-parallel degree
splits into dp_replicate x dp_shard (FSDP/ZeRO-3 over dp_shard); the micro-batch divides each
replica's share of the global batch; recompute is none, selective or full; sequence parallelism
is tried wherever tp > 1. Rows that fit in memory rank first, by estimated step time.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from hyperclova.config import ModelConfig
from hyperclova.errors import UserError
from hyperclova.plan.hardware import Cluster, Efficiency, MemoryModel
from hyperclova.plan.layout import Layout
from hyperclova.plan.memory import MemoryBreakdown, ModelStats, model_stats, peak_memory
from hyperclova.plan.perf import StepEstimate, estimate_step

RECOMPUTE = ("none", "selective", "full")
MICRO_BATCHES = (1, 2, 4, 8, 16)


@dataclass(frozen=True)
class Job:
    model: ModelConfig
    cluster: Cluster
    global_batch: int  # sequences per optimizer step
    tokens: float  # training budget in tokens
    eff: Efficiency = field(default_factory=Efficiency)
    mem: MemoryModel = field(default_factory=MemoryModel)
    flash: bool = True  # SDPA flash attention: no s^2 attention scores stored

    def __post_init__(self):
        if self.global_batch < 1 or self.tokens <= 0:
            raise UserError(f"global batch ({self.global_batch}) and token budget ({self.tokens}) "
                            "must be positive")


@dataclass(frozen=True)
class PlanRow:
    layout: Layout
    memory: MemoryBreakdown  # of the fullest pipeline stage
    worst_stage: int
    step: StepEstimate
    fits: bool
    mfu: float
    tflops: float  # hardware TFLOP/s per GPU, recomputation included (Megatron's metric)
    days: float

    @property
    def bubble(self) -> float:
        return self.step.t_bubble / self.step.t_pipeline


def evaluate(job: Job, lay: Layout, stats: ModelStats | None = None) -> PlanRow:
    """Memory, step time, MFU and days of one layout (which must be valid for the job); `stats`
    saves recounting the model for every candidate of a search."""
    stats = stats or model_stats(job.model)
    n_micro = job.global_batch // (lay.dp * lay.micro_batch_size)
    stage, mem = peak_memory(stats, lay, n_micro, job.mem, job.flash)
    step = estimate_step(stats, lay, job.global_batch, job.cluster, job.eff)
    world = job.cluster.world_size
    days = job.tokens / step.tokens_per_step * step.step_time / 86400
    return PlanRow(layout=lay, memory=mem, worst_stage=stage, step=step,
                   fits=mem.total <= job.cluster.gpu.memory,
                   mfu=step.mfu(world, job.cluster.gpu.peak_flops),
                   tflops=step.hw_tflops_per_gpu(world), days=days)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def candidate_layouts(job: Job, tp: list[int] | None = None, pp: list[int] | None = None,
                      recompute: tuple[str, ...] = RECOMPUTE,
                      micro_batches: tuple[int, ...] = MICRO_BATCHES,
                      sequence_parallel: tuple[bool, ...] = (False, True),
                      zero: bool = True) -> list[Layout]:
    m, world, node = job.model, job.cluster.world_size, job.cluster.gpus_per_node
    tps = tp or [t for t in _divisors(node) if m.n_heads % t == 0 and m.vocab_size % t == 0]
    out = []
    for t in tps:
        for p in pp or _divisors(m.n_layers):
            if world % (t * p):
                continue
            dp = world // (t * p)
            if job.global_batch % dp:
                continue
            for v, shard, b, rc, sp in itertools.product(
                    _divisors(m.n_layers // p) if p > 1 else [1],
                    _divisors(dp) if zero else [1], micro_batches, recompute, sequence_parallel):
                if (sp and t == 1) or (job.global_batch // dp) % b:
                    continue
                n_micro = job.global_batch // (dp * b)
                if (p > 1 and n_micro < p) or (v > 1 and n_micro % p) or (sp and m.seq_len % t):
                    continue  # the pipeline schedules' and sequence parallelism's conditions
                out.append(Layout(tp=t, pp=p, vpp=v, dp_replicate=dp // shard, dp_shard=shard,
                                  sequence_parallel=sp, micro_batch_size=b, recompute=rc))
    return out


def search(job: Job, **choices) -> list[PlanRow]:
    """Every candidate layout, estimated; fitting rows first, fastest first."""
    layouts = candidate_layouts(job, **choices)
    if not layouts:
        raise UserError(f"no layout of {job.model.n_layers} layers, {job.model.n_heads} heads fits "
                        f"{job.cluster.describe()} with global batch {job.global_batch}: the batch "
                        "must be divisible by the data-parallel degree")
    stats = model_stats(job.model)
    rows = [evaluate(job, lay, stats) for lay in layouts]
    rows.sort(key=lambda r: (not r.fits, r.step.step_time, r.memory.total))
    return rows
