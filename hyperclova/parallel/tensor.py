"""Megatron's tensor-parallel layout on DTensor, with optional sequence parallelism.

Per block: `qkv` and `fc1` are column-parallel (each rank holds whole heads / a slice of the MLP),
`proj` and `fc2` row-parallel (one all-reduce, or a reduce-scatter under sequence parallelism, per
sub-layer). The token embedding is vocab-parallel and shares its sharded weight with the output
projection, whose logits stay vocab-sharded for `loss_parallel`'s cross-entropy, so the full
(tokens x vocab) logits never exist on one rank. With sequence parallelism the LayerNorm, dropout
and residual regions hold 1/tp of the sequence each.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_module, distribute_tensor
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    PrepareModuleInput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)

from hyperclova.model.gpt import GPT


def apply_tp(model: GPT, tp_mesh: DeviceMesh, sequence_parallel: bool) -> None:
    """Shard `model` (a whole model or a pipeline stage) in place over `tp_mesh`."""
    # Activations between sub-layers: sequence-sharded (SP) or replicated.
    act = Shard(1) if sequence_parallel else Replicate()
    for block in model.layers.values():
        plan = {
            # Block calls attn(x, attn_mask, cache, start): only x is an activation.
            "attn": PrepareModuleInput(input_layouts=(act, None, None, None),
                                       desired_input_layouts=(Replicate(), None, None, None)),
            "attn.qkv": ColwiseParallel(),
            "attn.proj": RowwiseParallel(output_layouts=act),
            "mlp": PrepareModuleInput(input_layouts=(act,), desired_input_layouts=(Replicate(),)),
            "mlp.fc1": ColwiseParallel(),
            "mlp.fc2": RowwiseParallel(output_layouts=act),
        }
        if sequence_parallel:
            plan["ln_1"] = SequenceParallel()
            plan["ln_2"] = SequenceParallel()
        else:
            _replicated(block.ln_1, tp_mesh, Replicate())
            _replicated(block.ln_2, tp_mesh, Replicate())
        parallelize_module(block, tp_mesh, plan)
    if model.tok_emb is not None:
        parallelize_module(model.tok_emb, tp_mesh,
                           RowwiseParallel(input_layouts=Replicate(), output_layouts=act))
        _replicated(model.pos_emb, tp_mesh, Shard(0) if sequence_parallel else Replicate())
    if model.ln_f is not None:
        if sequence_parallel:
            parallelize_module(model.ln_f, tp_mesh, SequenceParallel())
        else:
            _replicated(model.ln_f, tp_mesh, Replicate())
    if model.lm_head is not None:
        # Vocab-sharded logits as a DTensor: the loss runs under loss_parallel().
        parallelize_module(model.lm_head, tp_mesh, ColwiseParallel(
            input_layouts=act, output_layouts=Shard(-1), use_local_output=False))
    model.tie_weights()  # both sides are Shard(0) over the vocabulary: share the DTensor again


def _replicated(module: nn.Module, tp_mesh: DeviceMesh, out_placement) -> None:
    """Keep `module`'s parameters whole on every tp rank, as Replicate DTensors (so an optimizer
    sees DTensors only), with plain tensors in and out; the output is cut to `out_placement`
    (Shard(0): this rank's part of the (T, d) position table under SP)."""

    def partition(name, mod, mesh):
        for pname, param in list(mod.named_parameters(recurse=False)):
            mod.register_parameter(pname, nn.Parameter(distribute_tensor(param, mesh, [Replicate()])))

    def input_fn(mod, inputs, mesh):
        return tuple(DTensor.from_local(x, mesh, [Replicate()], run_check=False)
                     if isinstance(x, torch.Tensor) and not isinstance(x, DTensor) else x
                     for x in inputs)

    def output_fn(mod, out, mesh):
        return out.redistribute(mesh, [out_placement]).to_local()

    distribute_module(module, tp_mesh, partition, input_fn, output_fn)
