"""Megatron's tensor-parallel layout on DTensor, with optional sequence parallelism.

Per block: `qkv` and `fc1` are column-parallel (each rank holds whole heads / a slice of the MLP),
`proj` and `fc2` row-parallel (one all-reduce, or a reduce-scatter under sequence parallelism, per
sub-layer). The token embedding is vocab-parallel; the output projection shares its sharded
weight and is applied by the engine together with the loss (hyperclova/parallel/loss.py), so the
full (tokens x vocab) logits never exist on one rank. With sequence parallelism the LayerNorm,
dropout and residual regions hold 1/tp of the sequence each.

Low-rank adapters (LoRA, hyperclova/tune/lora.py) on a split layer are split to match, so the
adapter adds to each rank's piece of the output what it adds to the whole: on a column-parallel
layer A (r x d_in) is replicated and B (d_out x r) split by rows like the weight; on a row-parallel
layer A is split by columns like the weight (its product is a partial sum, reduced with the
layer's own) and B replicated. A model with an input adapter (P-tuning) embeds the whole sequence
on every rank; sequence parallelism then splits it after the embedding.

Applied on the meta device, before anything is materialised: `src_data_rank=None` keeps DTensor
from broadcasting (there is nothing to broadcast yet; the engine initialises every local shard).
Parameters keep their `requires_grad` (a frozen base stays frozen).
"""
from __future__ import annotations

import warnings

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

from hyperclova.config import ConfigError
from hyperclova.model.gpt import GPT

# Linear layers of a block -> how tensor parallelism splits them (the planner counts from this).
TP_PLAN = {"attn.qkv": "colwise", "attn.proj": "rowwise", "mlp.fc1": "colwise", "mlp.fc2": "rowwise"}


def apply_tp(model: GPT, tp_mesh: DeviceMesh, sequence_parallel: bool) -> None:
    """Shard `model` (a whole model or a pipeline stage) in place over `tp_mesh`."""
    # New DTensor parameters (ours, and torch's SequenceParallel style's) require gradients:
    # note the frozen ones to freeze them again at the end.
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    # Activations between sub-layers: sequence-sharded (SP) or replicated.
    act = Shard(1) if sequence_parallel else Replicate()
    for block in model.layers.values():
        plan = {
            # Block calls attn(x, attn_mask, cache, start): only x is an activation.
            "attn": PrepareModuleInput(input_layouts=(act, None, None, None),
                                       desired_input_layouts=(Replicate(), None, None, None)),
            "mlp": PrepareModuleInput(input_layouts=(act,), desired_input_layouts=(Replicate(),)),
        }
        for name, kind in TP_PLAN.items():
            adapted = hasattr(block.get_submodule(name), "lora_A")
            if kind == "colwise":
                plan[name] = _AdaptedColwise() if adapted else ColwiseParallel()
            else:
                style = _AdaptedRowwise if adapted else RowwiseParallel
                plan[name] = style(output_layouts=act)
        if sequence_parallel:
            plan["ln_1"] = SequenceParallel()
            plan["ln_2"] = SequenceParallel()
        else:
            _replicated(block.ln_1, tp_mesh, Replicate())
            _replicated(block.ln_2, tp_mesh, Replicate())
        parallelize_module(block, tp_mesh, plan, src_data_rank=None)
    if model.tok_emb is not None:
        # An input adapter rewrites positions of the whole sequence: split it after the embedding.
        split_later = sequence_parallel and model.input_adapter is not None
        emb_out = Replicate() if split_later else act
        parallelize_module(model.tok_emb, tp_mesh,
                           RowwiseParallel(input_layouts=Replicate(), output_layouts=emb_out),
                           src_data_rank=None)
        _replicated(model.pos_emb, tp_mesh,
                    Shard(0) if sequence_parallel and not split_later else Replicate())
        if split_later:
            distribute_module(model.drop, tp_mesh, input_fn=_split_sequence)
    if model.ln_f is not None:
        if sequence_parallel:  # the output stays a sequence-sharded DTensor for the loss
            parallelize_module(model.ln_f, tp_mesh, SequenceParallel(), src_data_rank=None)
        else:
            _replicated(model.ln_f, tp_mesh, Replicate())
    if model.lm_head is not None and model.tok_emb is None:
        # A head-only pipeline stage: its own copy of the vocab-parallel weight.
        w = model.lm_head.weight
        model.lm_head.weight = nn.Parameter(distribute_tensor(w, tp_mesh, [Shard(0)],
                                                              src_data_rank=None))
    model.tie_weights()  # the head shares the embedding's vocab-sharded DTensor
    for n, p in model.named_parameters():
        if n in frozen:
            p.requires_grad_(False)


def _replicated(module: nn.Module, tp_mesh: DeviceMesh, out_placement) -> None:
    """Keep `module`'s parameters whole on every tp rank, as Replicate DTensors (so an optimizer
    sees DTensors only), with plain tensors in and out; the output is cut to `out_placement`
    (Shard(0): this rank's part of the (T, d) position table under SP)."""

    def partition(name, mod, mesh):
        for pname, param in list(mod.named_parameters(recurse=False)):
            dt = distribute_tensor(param, mesh, [Replicate()], src_data_rank=None)
            mod.register_parameter(pname, nn.Parameter(dt))

    def input_fn(mod, inputs, mesh):
        return tuple(DTensor.from_local(x, mesh, [Replicate()], run_check=False)
                     if isinstance(x, torch.Tensor) and not isinstance(x, DTensor) else x
                     for x in inputs)

    def output_fn(mod, out, mesh):
        return out.redistribute(mesh, [out_placement]).to_local()

    distribute_module(module, tp_mesh, partition, input_fn, output_fn)


def _split_sequence(mod, inputs, mesh):
    """Whole-sequence activations (the same on every rank) -> this rank's sequence shard."""
    x = DTensor.from_local(inputs[0], mesh, [Replicate()], run_check=False)
    return (x.redistribute(mesh, [Shard(1)]).to_local(),)


def _distribute_own(module: nn.Module, mesh: DeviceMesh, placement) -> None:
    """`module`'s own parameters (not its children's) as DTensors with `placement`."""
    for pname, p in list(module.named_parameters(recurse=False)):
        dt = distribute_tensor(p, mesh, [placement], src_data_rank=None)
        module.register_parameter(pname, nn.Parameter(dt, requires_grad=p.requires_grad))


class _AdaptedColwise(ColwiseParallel):
    """ColwiseParallel for a linear layer with LoRA factors: weight, bias and B split by output
    rows, A replicated."""

    def _partition_linear_fn(self, name, module, device_mesh):
        _distribute_own(module, device_mesh, Replicate() if name == "lora_A" else Shard(0))


class _AdaptedRowwise(RowwiseParallel):
    """RowwiseParallel for a linear layer with LoRA factors: weight and A split by input
    columns, bias and B replicated."""

    def _partition_linear_fn(self, name, module, device_mesh):
        if name == "":
            super()._partition_linear_fn(name, module, device_mesh)
        else:
            _distribute_own(module, device_mesh, Shard(1) if name == "lora_A" else Replicate())


def enable_async_tp(tp_mesh: DeviceMesh, device: torch.device, compiled: bool) -> None:
    """Async tensor parallelism: inductor's micro-pipelining splits each TP collective and its
    matmul into pieces that overlap, over symmetric memory. Needs CUDA and compiled blocks."""
    if device.type != "cuda" or not compiled or tp_mesh is None or tp_mesh.size() == 1:
        raise ConfigError("parallel.async_tp needs a CUDA device, parallel.compile=true and "
                          "parallel.tp > 1")
    # Private torch APIs (torchtitan's way in): checked, so a torch without them gets a clear
    # message instead of an AttributeError, and the trainer runs on torch 2.6 to 2.13.
    try:
        import torch._inductor.config as inductor_config
    except ImportError as e:  # pragma: no cover - depends on the torch build
        raise ConfigError(f"parallel.async_tp is not available in torch {torch.__version__}: {e}")
    if not hasattr(inductor_config, "_micro_pipeline_tp"):
        raise ConfigError(f"parallel.async_tp is not available in torch {torch.__version__} "
                          "(no inductor micro-pipeline TP); set parallel.async_tp=false")
    inductor_config._micro_pipeline_tp = True
    try:  # older torch must be told which group's buffers are symmetric; newer ones deprecate it
        from torch.distributed._symmetric_memory import enable_symm_mem_for_group
    except ImportError:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        enable_symm_mem_for_group(tp_mesh.get_group().group_name)
