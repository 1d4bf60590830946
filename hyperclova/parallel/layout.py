"""The one layout type: which degrees of tensor x pipeline x data parallelism a run uses, the rules
that say which rank holds what, and the checks that refuse a layout that cannot work.

The engine, the planner and the dry run all read a `Layout` (docs/parallel.md):
- ranks lie on the mesh (pp, dp_replicate, dp_shard, tp), tp fastest, so a TP group is contiguous
  (inside one node) and pipeline stages are furthest apart (Megatron-LM, torchtitan);
- the n_layers blocks are cut into pp * vpp equal stages; pipeline rank r runs stages r, r + pp,
  r + 2 pp, ... (the interleaved schedules' loop); the embedding sits on stage 0, the final norm and
  the output projection on the last stage (pipeline rank pp - 1).

Every combination is checked against the model, the batch and the world size before any process
group exists, so a wrong layout ends with a message that says what to change instead of a hang or
a shape error deep inside a collective.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch.distributed as dist

from hyperclova.config import Config, ConfigError
from hyperclova.errors import UserError

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
MESH_DIMS = ("pp", "dp_replicate", "dp_shard", "tp")  # outermost to innermost (fastest links)
Recompute = Literal["none", "selective", "full"]


@dataclass(frozen=True)
class Coord:
    """A rank's coordinates on the mesh (pp, dp_replicate, dp_shard, tp)."""

    pp: int = 0
    dp_replicate: int = 0
    dp_shard: int = 0
    tp: int = 0


@dataclass(frozen=True)
class Layout:
    tp: int = 1
    pp: int = 1
    vpp: int = 1  # stages per pipeline rank (interleaved schedules)
    dp_replicate: int = 1
    dp_shard: int = 1  # FSDP2 degree; with dp_replicate > 1 too: HSDP
    sequence_parallel: bool = False
    micro_batch_size: int = 1
    recompute: Recompute = "none"
    schedule: str = "1f1b"
    zero_stage: int = 3

    @classmethod
    def from_config(cls, cfg: Config) -> "Layout":
        p = cfg.parallel
        return cls(tp=p.tp, pp=p.pp, vpp=p.vpp, dp_replicate=p.dp_replicate, dp_shard=p.dp_shard,
                   sequence_parallel=p.sequence_parallel, micro_batch_size=cfg.train.micro_batch_size,
                   recompute=p.recompute, schedule=p.schedule, zero_stage=p.zero_stage)

    # -- sizes ------------------------------------------------------------------------------

    @property
    def dp(self) -> int:
        return self.dp_replicate * self.dp_shard

    @property
    def world_size(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def n_stages(self) -> int:
        return self.pp * self.vpp

    def degrees(self) -> dict[str, int]:
        return {"pp": self.pp, "dp_replicate": self.dp_replicate, "dp_shard": self.dp_shard,
                "tp": self.tp}

    def describe(self) -> str:
        return " ".join(f"{k}{v}" for k, v in self.degrees().items())

    # -- who holds what ---------------------------------------------------------------------

    def coord(self, rank: int) -> Coord:
        if not 0 <= rank < self.world_size:
            raise UserError(f"rank {rank} is outside the layout's world size {self.world_size}")
        rank, tp = divmod(rank, self.tp)
        rank, dps = divmod(rank, self.dp_shard)
        pp, dpr = divmod(rank, self.dp_replicate)
        return Coord(pp=pp, dp_replicate=dpr, dp_shard=dps, tp=tp)

    def rank(self, c: Coord) -> int:
        return ((c.pp * self.dp_replicate + c.dp_replicate) * self.dp_shard + c.dp_shard) * self.tp + c.tp

    def dp_rank(self, c: Coord) -> int:
        """Index among all data-parallel ranks (replicas x shards): the data loader's slice."""
        return c.dp_replicate * self.dp_shard + c.dp_shard

    def stage_ids(self, pp_rank: int) -> list[int]:
        """Global stage indices run by pipeline rank `pp_rank`, in execution order."""
        return [pp_rank + v * self.pp for v in range(self.vpp)]

    def stage_layers(self, stage: int, n_layers: int) -> range:
        per = n_layers // self.n_stages
        return range(stage * per, (stage + 1) * per)

    def rank_layers(self, pp_rank: int, n_layers: int) -> list[list[int]]:
        """Global layer indices of each stage run by pipeline rank `pp_rank`."""
        return [list(self.stage_layers(s, n_layers)) for s in self.stage_ids(pp_rank)]

    def has_embedding(self, pp_rank: int) -> bool:
        return pp_rank == 0

    def has_head(self, pp_rank: int) -> bool:
        return pp_rank == self.pp - 1

    # -- the config that selects it -----------------------------------------------------------

    def overrides(self, global_batch_size: int | None = None) -> list[str]:
        """The exact `key=value` overrides that select this layout in the trainer."""
        out = [f"parallel.tp={self.tp}", f"parallel.pp={self.pp}", f"parallel.vpp={self.vpp}",
               f"parallel.dp_replicate={self.dp_replicate}", f"parallel.dp_shard={self.dp_shard}",
               f"parallel.sequence_parallel={str(self.sequence_parallel).lower()}",
               f"parallel.schedule={self.schedule}", f"parallel.recompute={self.recompute}",
               f"parallel.zero_stage={self.zero_stage}",
               f"train.micro_batch_size={self.micro_batch_size}"]
        if global_batch_size is not None:
            out.append(f"train.global_batch_size={global_batch_size}")
        return out


def accumulation_steps(cfg: Config, dp: int) -> int:
    """Micro-batches per rank per optimizer step (the trainer's gradient-accumulation count)."""
    return cfg.train.global_batch_size // (cfg.train.micro_batch_size * dp)


def pipeline_microbatches(cfg: Config, dp: int) -> int:
    """How many micro-batches the pipeline schedule splits this rank's batch into."""
    return cfg.parallel.microbatches or accumulation_steps(cfg, dp)


def check_layout(cfg: Config, world_size: int | None = None) -> Layout:
    """Reject a layout that cannot work, naming the keys to change. Touches no process group."""
    p, m, t = cfg.parallel, cfg.model, cfg.train
    for key in ("tp", "pp", "vpp", "dp_replicate", "dp_shard"):
        if getattr(p, key) < 1:
            raise ConfigError(f"parallel.{key} must be at least 1, got {getattr(p, key)}")
    lay = Layout.from_config(cfg)
    if world_size is not None and lay.world_size != world_size:
        raise ConfigError(
            f"parallel.tp*pp*dp_replicate*dp_shard = {p.tp}*{p.pp}*{p.dp_replicate}*{p.dp_shard} = "
            f"{lay.world_size}, but the job has {world_size} processes; change the degrees or "
            f"launch with --nproc_per_node {lay.world_size}")
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
    if m.dropout > 0 and p.tp > 1:
        # Megatron draws different masks per TP rank inside the TP region and equal ones where
        # the activation is replicated; without that RNG tracker the masks would be correlated.
        raise ConfigError(f"model.dropout={m.dropout} with parallel.tp={p.tp} is not supported "
                          "(dropout masks under tensor parallelism); use model.dropout=0, "
                          "HyperCLOVA's setting, or parallel.tp=1")
    if p.schedule not in SCHEDULES:
        raise ConfigError(f"parallel.schedule={p.schedule!r} is not one of {list(SCHEDULES)}")
    if m.n_layers % lay.n_stages:
        raise ConfigError(f"model.n_layers={m.n_layers} is not divisible by parallel.pp*vpp="
                          f"{p.pp}*{p.vpp}={lay.n_stages}; change pp or vpp")
    _check_batch(cfg, lay)
    _check_schedule(cfg, lay)
    if t.dist_timeout_s <= 0:
        raise ConfigError(f"train.dist_timeout_s must be positive, got {t.dist_timeout_s}")
    return lay


def _check_batch(cfg: Config, lay: Layout) -> None:
    t = cfg.train
    per_step = t.micro_batch_size * lay.dp
    if t.global_batch_size % per_step:
        raise ConfigError(
            f"train.global_batch_size={t.global_batch_size} is not divisible by "
            f"train.micro_batch_size*dp = {t.micro_batch_size}*{lay.dp} = {per_step}; "
            f"change the batch sizes or parallel.dp_replicate/dp_shard")


def _check_schedule(cfg: Config, lay: Layout) -> None:
    p, t = cfg.parallel, cfg.train
    kind = SCHEDULES[p.schedule][1]
    if p.vpp > 1 and (p.pp == 1 or kind == "single"):
        raise ConfigError(f"parallel.vpp={p.vpp} needs parallel.pp > 1 and an interleaved schedule "
                          f"(interleaved_1f1b, looped_bfs, interleaved_zb), got pp={p.pp}, "
                          f"schedule={p.schedule}")
    if p.pp == 1:
        return
    sequences = t.global_batch_size // lay.dp
    n_micro = pipeline_microbatches(cfg, lay.dp)
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


def prepare_distributed(cfg: Config, world_size: int) -> Layout:
    """Call before `init_process_group`: reject a bad layout while nothing can hang yet, and
    switch on collective checking when `parallel.debug` is set (TORCH_DISTRIBUTED_DEBUG=DETAIL
    makes every collective verify that all ranks call it with the same shapes and order)."""
    lay = check_layout(cfg, world_size)
    if cfg.parallel.debug:
        os.environ["TORCH_DISTRIBUTED_DEBUG"] = "DETAIL"
        dist.set_debug_level_from_env()  # torch reads the variable once, at import
    return lay


def build_mesh(lay: Layout, device_type: str):
    """One DeviceMesh over all ranks with named dimensions (size-1 dimensions kept), on the
    running default process group."""
    from torch.distributed.device_mesh import init_device_mesh

    sizes = tuple(lay.degrees()[d] for d in MESH_DIMS)
    return init_device_mesh(device_type, sizes, mesh_dim_names=MESH_DIMS)
