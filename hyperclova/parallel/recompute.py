"""Activation recompute per block: `full` re-runs the whole block in backward and keeps only its
input; `selective` (Megatron's choice) keeps the matmul outputs and re-runs the cheap,
memory-hungry rest: attention core (SDPA), softmax/GeLU and LayerNorms."""
from __future__ import annotations

import functools

import torch
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

from hyperclova.model.gpt import GPT

# Outputs of these ops are kept; everything else inside a block is recomputed.
_SAVE_OPS = {
    torch.ops.aten.mm.default,
    torch.ops.aten.addmm.default,
    torch.ops.aten.bmm.default,
    torch.ops.aten.linear.default,
    # Collectives are never re-run: recomputing them would double the communication.
    torch.ops._c10d_functional.all_gather_into_tensor.default,
    torch.ops._c10d_functional.reduce_scatter_tensor.default,
    torch.ops._c10d_functional.all_reduce.default,
}


def _selective_policy(ctx, op, *args, **kwargs):
    return CheckpointPolicy.MUST_SAVE if op in _SAVE_OPS else CheckpointPolicy.PREFER_RECOMPUTE


def apply_recompute(model: GPT, mode: str) -> None:
    """Wrap each block of `model` in place ("none" leaves it alone)."""
    if mode == "none":
        return
    for key, block in list(model.layers.items()):
        if mode == "full":
            wrapped = checkpoint_wrapper(block, preserve_rng_state=False)
        elif mode == "selective":
            wrapped = checkpoint_wrapper(
                block, preserve_rng_state=False,
                context_fn=functools.partial(create_selective_checkpoint_contexts, _selective_policy))
        else:
            raise ValueError(f"unknown recompute mode {mode!r}")
        model.layers[key] = wrapped


def apply_block_transforms(model: GPT, recompute: str, compile: bool) -> None:
    """Recompute, then torch.compile, per block (DESIGN §2 order) — on one device as in parallel."""
    apply_recompute(model, recompute)
    if compile:
        for block in model.layers.values():
            block.compile()
