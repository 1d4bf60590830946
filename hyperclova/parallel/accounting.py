"""What each rank holds: parameter, gradient and optimizer-state bytes of its local shards.

Computed from the local shard sizes at start-up (before the first step allocates gradients and
AdamW state), so a layout's memory can be read off the log before it runs out of it.
"""
from __future__ import annotations

import torch.nn as nn
from torch.distributed.tensor import DTensor

ADAMW_STATES = 2  # exp_avg and exp_avg_sq, each the size and dtype of the (local) parameter


def local_tensor(t):
    return t.to_local() if isinstance(t, DTensor) else t


def memory_bytes(model_parts: list[nn.Module]) -> dict[str, int]:
    """Bytes of this rank's parameters, their gradients and AdamW's state."""
    seen, params = set(), 0
    for m in model_parts:
        for p in m.parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            local = local_tensor(p)
            params += local.numel() * local.element_size()
    return {"params": params, "grads": params, "optim": ADAMW_STATES * params}


def format_memory(rank: int, layout: str, mem: dict[str, int]) -> str:
    mib = {k: v / 2**20 for k, v in mem.items()}
    total = sum(mib.values())
    return (f"rank {rank} [{layout}]: params {mib['params']:.1f} MiB, grads {mib['grads']:.1f} MiB, "
            f"optimizer state {mib['optim']:.1f} MiB (total {total:.1f} MiB before activations)")
