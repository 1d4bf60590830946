"""Data parallelism on FSDP2: `dp_shard > 1` shards parameters, gradients and optimizer state
with `fully_shard`, hybrid (HSDP: sharded inside a group, replicated across groups) when
`dp_replicate > 1` too; `dp_shard == 1` is DDP through `replicate`, FSDP2's replicated twin (on
torch before 2.10: HSDP with shard groups of one rank, the same computation). Both are applied
per block, so each block's gradient reduction overlaps the backward of the blocks
before it, then to the root for the rest.

`parallel.zero_stage` picks what FSDP2 frees between uses (docs/parallel.md): 3 reshards each
block's weights after its forward and gathers them again for backward; 2 keeps them gathered
until the optimizer step (one all-gather per step, the whole bf16 weights resident), which is
ZeRO-2's trade: sharded gradients and optimizer state, replicated compute weights.
"""
from __future__ import annotations

import torch
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from hyperclova.model.gpt import GPT
from hyperclova.parallel.layout import Layout


def fsdp_replicate():
    """FSDP2's `replicate` over a 1-D mesh (torch 2.10 and later), else None. Older torch has
    none, or a prototype that wants another mesh; there DDP is HSDP with shard groups of one
    rank, which computes the same (a private module: hence the version gate)."""
    if torch.__version__ < "2.10":
        return None
    try:
        from torch.distributed._composable.replicate_with_fsdp import replicate
    except ImportError:  # pragma: no cover - a build without it
        return None
    return replicate


def mixed_precision(param_dtype: torch.dtype | None) -> MixedPrecisionPolicy:
    """bf16 compute with fp32 master weights and fp32 gradient reduction (GPU); fp32 on CPU."""
    if param_dtype is None:
        return MixedPrecisionPolicy()
    return MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)


def apply_dp(model: GPT, mesh: DeviceMesh, lay: Layout, param_dtype: torch.dtype | None = None) -> None:
    """Wrap `model` (a whole model or a pipeline stage) in place over the data-parallel dims.
    Under pipelining, or with zero_stage 2, parameters stay gathered between the micro-batches'
    forward and backward instead of being re-gathered for every micro-batch."""
    mp = mixed_precision(param_dtype)
    keep_gathered = lay.pp > 1 or lay.zero_stage == 2
    replicate = fsdp_replicate() if lay.dp_shard == 1 else None
    if replicate is not None:
        wrap = lambda m, **kw: replicate(m, mesh=mesh["dp_replicate"], mp_policy=mp)  # noqa: E731
    else:
        names = ("dp_shard",) if lay.dp_replicate == 1 else ("dp_replicate", "dp_shard")
        wrap = lambda m, **kw: fully_shard(m, mesh=mesh[names], mp_policy=mp, **kw)  # noqa: E731
    blocks = list(model.layers.values())
    for i, block in enumerate(blocks):
        # The last block's parameters are needed again at once by backward: keep them gathered.
        reshard = not keep_gathered and i < len(blocks) - 1
        wrap(block, **({"reshard_after_forward": reshard} if replicate is None else {}))
    wrap(model, **({"reshard_after_forward": False} if replicate is None else {}))
