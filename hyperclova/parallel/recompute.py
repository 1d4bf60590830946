"""Activation recompute and compilation per block.

`full` re-runs the whole block in backward and keeps only its input. `selective` is torchtitan's
op-level policy: it keeps the outputs of the matmuls and of attention (the expensive ops, and
attention's output is small next to what recomputing it costs) and re-runs the cheap,
memory-hungry rest: LayerNorms, GeLU, dropout, residual adds. With dropout the RNG state is
saved and restored around the recomputation, so the masks, and the gradients, are those of a run
without recompute.
"""
from __future__ import annotations

import functools

import torch
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

from hyperclova.model.gpt import GPT


def _ops(*names: str) -> set:
    """aten ops by name, skipping those a torch build does not have (the SDPA kernels vary)."""
    out = set()
    for name in names:
        op, _, overload = name.partition(".")
        packet = getattr(torch.ops.aten, op, None)
        if packet is not None and hasattr(packet, overload):
            out.add(getattr(packet, overload))
    return out


# Outputs of these ops are kept; everything else inside a block is recomputed.
_SAVE_OPS = _ops(
    "mm.default", "addmm.default", "bmm.default", "linear.default",
    "_scaled_dot_product_flash_attention.default",
    "_scaled_dot_product_flash_attention_for_cpu.default",
    "_scaled_dot_product_efficient_attention.default",
    "_scaled_dot_product_cudnn_attention.default",
    "_scaled_dot_product_fused_attention_overrideable.default",
) | {
    # Collectives are never re-run: recomputing them would double the communication.
    torch.ops._c10d_functional.all_gather_into_tensor.default,
    torch.ops._c10d_functional.reduce_scatter_tensor.default,
    torch.ops._c10d_functional.all_reduce.default,
}


def _selective_policy(ctx, op, *args, **kwargs):
    return CheckpointPolicy.MUST_SAVE if op in _SAVE_OPS else CheckpointPolicy.PREFER_RECOMPUTE


def apply_recompute(model: GPT, mode: str, preserve_rng: bool = False) -> None:
    """Wrap each block of `model` in place ("none" leaves it alone). `preserve_rng` (needed with
    dropout) replays the forward's RNG state in the recomputation."""
    if mode == "none":
        return
    for key, block in list(model.layers.items()):
        if mode == "full":
            wrapped = checkpoint_wrapper(block, preserve_rng_state=preserve_rng)
        elif mode == "selective":
            wrapped = checkpoint_wrapper(
                block, preserve_rng_state=preserve_rng,
                context_fn=functools.partial(create_selective_checkpoint_contexts, _selective_policy))
        else:
            raise ValueError(f"unknown recompute mode {mode!r}")
        model.layers[key] = wrapped


def apply_compile(model: GPT) -> None:
    """torch.compile each block in place (module names, and so checkpoint keys, unchanged)."""
    for block in model.layers.values():
        block.compile()
