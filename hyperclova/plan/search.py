"""Enumerate layouts for a model on a cluster, estimate each, rank them.

TP stays inside a node; PP divides the layers; VPP divides each stage's layers; the data-parallel
degree splits into dp_replicate x dp_shard (FSDP over dp_shard, HSDP with both, ZeRO stage 2 or
3); the micro-batch divides each replica's share of the global batch; recompute is none,
selective or full; sequence parallelism is tried wherever tp > 1. Every candidate passes the
trainer's own layout check (hyperclova.parallel.layout.check_layout), so the planner never
recommends a layout the trainer refuses. Rows that fit in memory rank first, by estimated step
time.
"""
from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

from hyperclova.config import Config, ConfigError, ModelConfig, ParallelConfig, TrainConfig
from hyperclova.errors import UserError
from hyperclova.parallel.layout import Layout, check_layout
from hyperclova.plan.hardware import Cluster, Efficiency, MemoryModel
from hyperclova.plan.memory import (
    DEFAULT_LOSS_CHUNK,
    MemoryBreakdown,
    ModelStats,
    model_stats,
    peak_memory,
)
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
    loss_chunk: int = DEFAULT_LOSS_CHUNK  # train.loss_chunk_tokens

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
    stage, mem = peak_memory(stats, lay, n_micro, job.mem, job.flash, job.loss_chunk)
    step = estimate_step(stats, lay, job.global_batch, job.cluster, job.eff)
    world = job.cluster.world_size
    days = job.tokens / step.tokens_per_step * step.step_time / 86400
    return PlanRow(layout=lay, memory=mem, worst_stage=stage, step=step,
                   fits=mem.total <= job.cluster.gpu.memory,
                   mfu=step.mfu(world, job.cluster.gpu.peak_flops),
                   tflops=step.hw_tflops_per_gpu(world), days=days)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def refusal(job: Job, lay: Layout, world_size: int | None = None) -> str | None:
    """The trainer's own reason to refuse `lay` for this job (its layout check, word for word),
    or None when it accepts it. `world_size` None checks the layout against the model and the
    batch alone."""
    cfg = Config(model=job.model,
                 train=TrainConfig(global_batch_size=job.global_batch,
                                   micro_batch_size=lay.micro_batch_size),
                 parallel=ParallelConfig(tp=lay.tp, pp=lay.pp, vpp=lay.vpp,
                                         dp_replicate=lay.dp_replicate, dp_shard=lay.dp_shard,
                                         sequence_parallel=lay.sequence_parallel,
                                         schedule=lay.schedule, recompute=lay.recompute,
                                         zero_stage=lay.zero_stage))
    try:
        check_layout(cfg, world_size)
    except ConfigError as e:
        return str(e)
    return None


def _degree_refusal(job: Job, t: int, p: int) -> str | None:
    """Why no layout with tp=t and pp=p can run this job, whatever its other choices."""
    why = refusal(job, Layout(tp=t, pp=p))  # the model's own limits: heads, vocabulary, layers
    if why is None and job.cluster.world_size % (t * p):
        why = f"parallel.tp*pp must divide the world size ({job.cluster.describe()})"
    return why


def candidate_layouts(job: Job, tp: list[int] | None = None, pp: list[int] | None = None,
                      recompute: tuple[str, ...] = RECOMPUTE,
                      micro_batches: tuple[int, ...] = MICRO_BATCHES,
                      sequence_parallel: tuple[bool, ...] = (False, True),
                      zero: bool = True, refused: Counter | None = None) -> list[Layout]:
    """Every layout of the job's cluster that the trainer accepts; the trainer's reasons for
    the others are counted in `refused`."""
    m, world, node = job.model, job.cluster.world_size, job.cluster.gpus_per_node
    refused = Counter() if refused is None else refused
    out = []
    for t in tp or _divisors(node):
        for p in pp or _divisors(m.n_layers):
            if why := _degree_refusal(job, t, p):
                refused[why] += 1
                continue
            dp = world // (t * p)
            for v, shard, stage, b, rc, sp in itertools.product(
                    _divisors(m.n_layers // p) if p > 1 else [1], _divisors(dp) if zero else [1],
                    (3, 2), micro_batches, recompute, sequence_parallel):
                if stage == 2 and (shard == 1 or p > 1):
                    continue  # without sharding, or with a pipeline (weights stay gathered per
                    # step anyway), stage 2 is stage 3
                lay = Layout(tp=t, pp=p, vpp=v, dp_replicate=dp // shard, dp_shard=shard,
                             sequence_parallel=sp, micro_batch_size=b, recompute=rc,
                             schedule="interleaved_1f1b" if v > 1 else "1f1b", zero_stage=stage)
                if why := refusal(job, lay, world):
                    refused[why] += 1
                else:
                    out.append(lay)
    return out


def search(job: Job, **choices) -> list[PlanRow]:
    """Every candidate layout, estimated; fitting rows first, fastest first. Rows within 1% of
    each other's step time rank by the bytes each GPU sends over InfiniBand: the model's
    overlap of that traffic is optimistic, so in a tie HSDP sharding inside a node beats FSDP
    across nodes."""
    refused: Counter = Counter()
    layouts = candidate_layouts(job, refused=refused, **choices)
    if not layouts:
        reasons = "; ".join(why for why, _ in refused.most_common(3))
        raise UserError(f"no layout of {job.model.n_layers} layers, {job.model.n_heads} heads on "
                        f"{job.cluster.describe()} with global batch {job.global_batch} passes "
                        f"the trainer's layout check: {reasons}")
    stats = model_stats(job.model)
    rows = [evaluate(job, lay, stats) for lay in layouts]
    best = min((r.step.step_time for r in rows if r.fits), default=1.0)
    rows.sort(key=lambda r: (not r.fits, round(r.step.step_time / best, 2),
                             r.step.internode_bytes, r.step.step_time, r.memory.total))
    return rows
