"""A parallel layout and the rules that say which rank holds what.

The rules follow Megatron-LM and torchtitan:
- ranks are laid out on the mesh (pp, dp_replicate, dp_shard, tp), tp fastest, so a TP group is
  contiguous (inside one node) and pipeline stages are furthest apart;
- the n_layers blocks are cut into pp * vpp equal chunks; pipeline rank r holds chunks r, r + pp,
  r + 2 pp, ... (the interleaved schedule), the embedding sits on chunk 0 and the final norm + head
  on the last chunk (rank pp - 1). With pp > 1 the head keeps its own copy of the tied embedding;
- tensor parallel shards `qkv`/`fc1` by output rows (column parallel), `proj`/`fc2` by input
  columns (row parallel, bias replicated), the token embedding by vocabulary rows; LayerNorms and
  the position embedding are replicated.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from hyperclova.config import ParallelConfig
from hyperclova.errors import UserError

# parameter-name suffix inside a Block -> how tensor parallelism splits it
TP_PLAN = {"attn.qkv": "colwise", "attn.proj": "rowwise", "mlp.fc1": "colwise", "mlp.fc2": "rowwise"}

Recompute = Literal["none", "selective", "full"]


@dataclass(frozen=True)
class Layout:
    tp: int = 1
    pp: int = 1
    vpp: int = 1
    dp_replicate: int = 1
    dp_shard: int = 1
    sequence_parallel: bool = False
    micro_batch_size: int = 1
    recompute: Recompute = "none"

    @property
    def dp(self) -> int:
        return self.dp_replicate * self.dp_shard

    @property
    def world_size(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def schedule(self) -> str:
        return "interleaved_1f1b" if self.vpp > 1 else "1f1b"  # names of hyperclova.parallel

    @classmethod
    def from_config(cls, par: ParallelConfig, micro_batch_size: int = 1) -> "Layout":
        return cls(tp=par.tp, pp=par.pp, vpp=par.vpp, dp_replicate=par.dp_replicate,
                   dp_shard=par.dp_shard, sequence_parallel=par.sequence_parallel,
                   micro_batch_size=micro_batch_size, recompute=par.recompute)

    def overrides(self, global_batch_size: int | None = None) -> list[str]:
        """The exact `key=value` overrides that select this layout in the trainer."""
        out = [f"parallel.tp={self.tp}", f"parallel.pp={self.pp}", f"parallel.vpp={self.vpp}",
               f"parallel.dp_replicate={self.dp_replicate}", f"parallel.dp_shard={self.dp_shard}",
               f"parallel.sequence_parallel={str(self.sequence_parallel).lower()}",
               f"parallel.schedule={self.schedule}", f"parallel.recompute={self.recompute}",
               f"train.micro_batch_size={self.micro_batch_size}"]
        if global_batch_size is not None:
            out.append(f"train.global_batch_size={global_batch_size}")
        return out

    def as_dict(self) -> dict:
        return asdict(self)


def chunk_layers(n_layers: int, pp: int, vpp: int, pp_rank: int) -> list[list[int]]:
    """Global layer indices of each model chunk held by pipeline rank `pp_rank`."""
    per_chunk = n_layers // (pp * vpp)
    chunks = range(pp_rank, pp * vpp, pp)
    return [list(range(c * per_chunk, (c + 1) * per_chunk)) for c in chunks]


def has_embedding(lay: Layout, pp_rank: int) -> bool:
    return pp_rank == 0


def has_head(lay: Layout, pp_rank: int) -> bool:
    return pp_rank == lay.pp - 1


@dataclass(frozen=True)
class Coord:
    """A rank's coordinates on the mesh (pp, dp_replicate, dp_shard, tp)."""

    pp: int
    dp_replicate: int
    dp_shard: int
    tp: int


def rank_coord(lay: Layout, rank: int) -> Coord:
    if not 0 <= rank < lay.world_size:
        raise UserError(f"rank {rank} is outside the layout's world size {lay.world_size}")
    rank, tp = divmod(rank, lay.tp)
    rank, dps = divmod(rank, lay.dp_shard)
    pp, dpr = divmod(rank, lay.dp_replicate)
    return Coord(pp=pp, dp_replicate=dpr, dp_shard=dps, tp=tp)


def coord_rank(lay: Layout, c: Coord) -> int:
    return ((c.pp * lay.dp_replicate + c.dp_replicate) * lay.dp_shard + c.dp_shard) * lay.tp + c.tp
