"""The layout of a run: `ParallelDims` (pp, dp_replicate, dp_shard, tp) -> one DeviceMesh.

Every combination is checked against the model, the batch and the world size *before* any process
group exists, so a wrong layout ends with a message that says what to change instead of a hang or
a shape error deep inside a collective.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from hyperclova.config import Config, ConfigError

# Schedule names of the config -> (torch.distributed.pipelining class name, stages per rank rule).
# "single" schedules run one stage per rank (vpp must be 1); "multi" schedules run vpp stages per
# rank in a loop. (torch's V-shaped ZBV schedule is left out: torch 2.13 has no forward-only
# schedule for its stage placement, which evaluation needs; interleaved_zb is zero-bubble too.)
SCHEDULES = {
    "gpipe": ("GPipe", "single"),
    "1f1b": ("1F1B", "single"),
    "interleaved_1f1b": ("Interleaved1F1B", "multi"),
    "looped_bfs": ("LoopedBFS", "multi"),
    "interleaved_zb": ("InterleavedZeroBubble", "multi"),
}


@dataclass(frozen=True)
class ParallelDims:
    """Degrees of the four mesh dimensions; outermost (pp) to innermost (tp, fastest links)."""

    pp: int = 1
    dp_replicate: int = 1
    dp_shard: int = 1
    tp: int = 1

    @classmethod
    def from_config(cls, cfg: Config) -> "ParallelDims":
        p = cfg.parallel
        return cls(pp=p.pp, dp_replicate=p.dp_replicate, dp_shard=p.dp_shard, tp=p.tp)

    @property
    def world_size(self) -> int:
        return self.pp * self.dp_replicate * self.dp_shard * self.tp

    @property
    def dp(self) -> int:
        return self.dp_replicate * self.dp_shard

    @property
    def is_parallel(self) -> bool:
        return self.world_size > 1

    def build_mesh(self, device_type: str) -> DeviceMesh:
        """One mesh over all ranks, with named dimensions (size-1 dimensions are kept)."""
        names = ("pp", "dp_replicate", "dp_shard", "tp")
        sizes = (self.pp, self.dp_replicate, self.dp_shard, self.tp)
        return init_device_mesh(device_type, sizes, mesh_dim_names=names)

    def dp_rank(self, mesh: DeviceMesh) -> int:
        """This rank's index among all data-parallel ranks (replicas x shards)."""
        return mesh["dp_replicate"].get_local_rank() * self.dp_shard + mesh["dp_shard"].get_local_rank()


def accumulation_steps(cfg: Config, dp: int) -> int:
    """Micro-batches per rank per optimizer step (the trainer's gradient-accumulation count)."""
    return cfg.train.global_batch_size // (cfg.train.micro_batch_size * dp)


def pipeline_microbatches(cfg: Config, dp: int) -> int:
    """How many micro-batches the pipeline schedule splits this rank's batch into."""
    return cfg.parallel.microbatches or accumulation_steps(cfg, dp)


def check_layout(cfg: Config, world_size: int | None = None) -> ParallelDims:
    """Reject a layout that cannot work, naming the keys to change. Touches no process group."""
    p, m, t = cfg.parallel, cfg.model, cfg.train
    for key in ("tp", "pp", "vpp", "dp_replicate", "dp_shard"):
        if getattr(p, key) < 1:
            raise ConfigError(f"parallel.{key} must be at least 1, got {getattr(p, key)}")
    dims = ParallelDims.from_config(cfg)
    if world_size is not None and dims.world_size != world_size:
        raise ConfigError(
            f"parallel.tp*pp*dp_replicate*dp_shard = {p.tp}*{p.pp}*{p.dp_replicate}*{p.dp_shard} = "
            f"{dims.world_size}, but the job has {world_size} processes; change the degrees or "
            f"launch with --nproc_per_node {dims.world_size}")
    if m.n_heads % p.tp:
        raise ConfigError(f"model.n_heads={m.n_heads} is not divisible by parallel.tp={p.tp}; "
                          f"pick a tp that divides the head count")
    if m.vocab_size % p.tp:
        raise ConfigError(f"model.vocab_size={m.vocab_size} is not divisible by parallel.tp={p.tp} "
                          f"(vocab-parallel embedding); pad the vocabulary or change tp")
    if p.sequence_parallel and p.tp == 1:
        raise ConfigError("parallel.sequence_parallel needs parallel.tp > 1 (it shards the "
                          "sequence over the tensor-parallel ranks)")
    if p.sequence_parallel and m.seq_len % p.tp:
        raise ConfigError(f"parallel.sequence_parallel needs model.seq_len={m.seq_len} divisible "
                          f"by parallel.tp={p.tp}")
    if p.schedule not in SCHEDULES:
        raise ConfigError(f"parallel.schedule={p.schedule!r} is not one of {list(SCHEDULES)}")
    n_stages = p.pp * p.vpp
    if m.n_layers % n_stages:
        raise ConfigError(f"model.n_layers={m.n_layers} is not divisible by parallel.pp*vpp="
                          f"{p.pp}*{p.vpp}={n_stages}; change pp or vpp")
    _check_batch(cfg, dims)
    _check_schedule(cfg, dims)
    if t.dist_timeout_s <= 0:
        raise ConfigError(f"train.dist_timeout_s must be positive, got {t.dist_timeout_s}")
    return dims


def _check_batch(cfg: Config, dims: ParallelDims) -> None:
    t = cfg.train
    per_step = t.micro_batch_size * dims.dp
    if t.global_batch_size % per_step:
        raise ConfigError(
            f"train.global_batch_size={t.global_batch_size} is not divisible by "
            f"train.micro_batch_size*dp = {t.micro_batch_size}*{dims.dp} = {per_step}; "
            f"change the batch sizes or parallel.dp_replicate/dp_shard")


def _check_schedule(cfg: Config, dims: ParallelDims) -> None:
    p, t = cfg.parallel, cfg.train
    kind = SCHEDULES[p.schedule][1]
    if p.vpp > 1 and (p.pp == 1 or kind == "single"):
        raise ConfigError(f"parallel.vpp={p.vpp} needs parallel.pp > 1 and an interleaved schedule "
                          f"(interleaved_1f1b, looped_bfs, interleaved_zb), got pp={p.pp}, "
                          f"schedule={p.schedule}")
    if p.pp == 1:
        return
    sequences = t.global_batch_size // dims.dp
    n_micro = pipeline_microbatches(cfg, dims.dp)
    if p.microbatches is not None and sequences % p.microbatches:
        raise ConfigError(f"parallel.microbatches={p.microbatches} does not divide the "
                          f"{sequences} sequences each data-parallel rank gets per step")
    if n_micro < p.pp:
        raise ConfigError(
            f"the pipeline gets {n_micro} micro-batches per step but has parallel.pp={p.pp} "
            f"stages; set parallel.microbatches >= {p.pp} (or raise train.global_batch_size)")
    if kind != "single" and n_micro % p.pp:
        raise ConfigError(f"parallel.schedule={p.schedule} needs the micro-batch count "
                          f"({n_micro}) to be a multiple of parallel.pp={p.pp}")


def prepare_distributed(cfg: Config, world_size: int) -> ParallelDims:
    """Call before `init_process_group`: reject a bad layout while nothing can hang yet, and
    switch on collective checking when `parallel.debug` is set (TORCH_DISTRIBUTED_DEBUG=DETAIL
    makes every collective verify that all ranks call it with the same shapes and order)."""
    dims = check_layout(cfg, world_size)
    if cfg.parallel.debug:
        os.environ["TORCH_DISTRIBUTED_DEBUG"] = "DETAIL"
        dist.set_debug_level_from_env()  # torch reads the variable once, at import
    return dims
