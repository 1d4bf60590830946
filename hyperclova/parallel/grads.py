"""The global gradient norm and clipping for gradients sharded over any mesh dimensions.

Squares are summed per group of gradients with the same sharding, with foreach kernels (one
launch per group, not one per tensor); then one small all-reduce per mesh dimension adds the
partial sums of the groups sharded on it, and one over the pipeline adds the stages. Nothing
here waits for the host: the norm and the clipping coefficient stay on the device.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from hyperclova.parallel.accounting import local_tensor



def _sharded_over(g: torch.Tensor) -> tuple:
    """The process groups of the mesh dimensions `g` is split over."""
    if not isinstance(g, DTensor):
        return ()
    return tuple(g.device_mesh.get_group(i) for i, pl in enumerate(g.placements)
                 if not pl.is_replicate())


@torch.no_grad()
def global_norm(grads: list[torch.Tensor], pp_group=None) -> torch.Tensor:
    """L2 norm of `grads` (each counted once) over every rank that holds a piece of them."""
    groups: dict[tuple, list[torch.Tensor]] = {}
    for g in grads:
        groups.setdefault(_sharded_over(g), []).append(local_tensor(g))
    keys = list(groups)
    device = next(iter(groups.values()))[0].device if groups else _default_device(pp_group)
    if not keys:  # nothing trainable here (a frozen pipeline stage): still join the stages' sum
        total = torch.zeros((), device=device)
        if pp_group is not None:
            dist.all_reduce(total, group=pp_group)
        return total.sqrt()
    sums = torch.stack([torch.stack(torch._foreach_norm(ts, 2.0)).float().pow(2).sum()
                        for ts in groups.values()])
    dims: dict = {}  # process group of a mesh dimension -> the sums sharded over it
    for i, key in enumerate(keys):
        for group in key:
            dims.setdefault(group, []).append(i)
    for group, members in dims.items():
        mask = torch.zeros(len(keys), dtype=torch.bool, device=sums.device)
        mask[members] = True
        reduced = torch.where(mask, sums, 0.0)
        dist.all_reduce(reduced, group=group)
        sums = torch.where(mask, reduced, sums)
    total = sums.sum()
    if pp_group is not None:
        dist.all_reduce(total, group=pp_group)
    return total.sqrt()


def _default_device(group) -> torch.device:
    if group is not None and dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@torch.no_grad()
def clip_(grads: list[torch.Tensor], norm: torch.Tensor, max_norm: float) -> None:
    """Scale `grads` in place so that their global norm is at most `max_norm` (no-op when 0)."""
    if max_norm <= 0 or not grads:
        return
    coef = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for g in grads:
        by_dtype.setdefault(g.dtype, []).append(local_tensor(g))
    for dtype, ts in by_dtype.items():
        torch._foreach_mul_(ts, coef.to(dtype))
