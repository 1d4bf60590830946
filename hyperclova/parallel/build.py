"""The one build path, for every layout including one device (torchtitan's order, docs/parallel.md):

    model on the meta device -> model transforms (adapters; float8) -> pipeline split ->
    tensor/sequence parallel -> activation recompute -> torch.compile per block ->
    FSDP2 / HSDP / DDP -> to_empty on the device -> initialise the local shards

Nothing is allocated before the last two steps, and then only this rank's shards, so a model too
big for one device builds as easily as a small one. Initialisation draws each parameter whole
from its own generator (seeded by the run's seed and the parameter's name, hyperclova/model/gpt.py)
and keeps this rank's slice: every layout starts from bit-identical weights, one parameter's
full size at a time. The dry run and the planner's checks run the same path on the meta device
under a fake process group (hyperclova/plan/dryrun.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.tensor import DTensor

from hyperclova.config import Config, ConfigError
from hyperclova.errors import UserError
from hyperclova.model.gpt import GPT, init_parameter
from hyperclova.parallel.accounting import local_tensor
from hyperclova.parallel.data import apply_dp
from hyperclova.parallel.layout import Coord, Layout, build_mesh, check_layout
from hyperclova.parallel.pipeline import cut_stage
from hyperclova.parallel.recompute import apply_compile, apply_recompute
from hyperclova.parallel.tensor import apply_tp, enable_async_tp

ModelTransform = Callable[[GPT], None]
_WRAPPERS = ("_checkpoint_wrapped_module.", "_orig_mod.")


def plain_name(fqn: str) -> str:
    """A parameter's name in the plain model (wrapper prefixes removed)."""
    for w in _WRAPPERS:
        fqn = fqn.replace(w, "")
    return fqn


def resolve_device(cfg: Config) -> torch.device:
    if cfg.train.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.train.device)


def autocast_dtype_for(cfg: Config, device: torch.device) -> torch.dtype | None:
    """bf16 compute where asked for (or, with `auto`, on a GPU that has bf16), else None (fp32)."""
    dtype = cfg.train.dtype
    bf16_gpu = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if dtype == "auto":
        dtype = "bf16" if bf16_gpu else "fp32"
    if dtype == "bf16" and device.type == "cuda" and not bf16_gpu:
        raise ConfigError(f"train.dtype=bf16: {torch.cuda.get_device_name(device)} has no bf16 "
                          "support; use train.dtype=fp32 (or auto)")
    return torch.bfloat16 if dtype == "bf16" else None


def compile_enabled(cfg: Config, device: torch.device) -> bool:
    return cfg.parallel.compile if cfg.parallel.compile is not None else device.type == "cuda"


@dataclass
class BuiltModel:
    parts: list[GPT]  # this rank's pipeline stages (one part without pipelining)
    stage_ids: list[int]
    layout: Layout
    coord: Coord
    mesh: object | None  # DeviceMesh; None for one process without a process group
    base_names: set[str] = field(default_factory=set)  # parameters before model transforms


def build_parts(cfg: Config, device: torch.device,
                model_transforms: Sequence[ModelTransform] = (),
                materialize: bool = True) -> BuiltModel:
    """This rank's model parts for `cfg`'s layout, on the running process group (none is needed
    for a one-process layout). With `materialize=False` they stay on the meta device."""
    world = dist.get_world_size() if dist.is_initialized() else 1
    lay = check_layout(cfg, world)
    mesh = build_mesh(lay, device.type) if lay.world_size > 1 else None
    coord = Coord(*mesh.get_coordinate()) if mesh is not None else Coord()
    compiled = compile_enabled(cfg, device)
    with torch.device("meta"):
        model = GPT(cfg.model)
    base = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    for fn in model_transforms:
        fn(model)
    if cfg.train.float8:
        convert_to_float8(model, device, lay)
    model.skip_head = True  # the engine applies the output layer with the loss (parallel/loss.py)
    ids = lay.stage_ids(coord.pp)
    parts = [cut_stage(model, s, lay) for s in ids] if lay.n_stages > 1 else [model]
    if cfg.parallel.async_tp:
        enable_async_tp(mesh["tp"] if mesh is not None else None, device, compiled)
    param_dtype = autocast_dtype_for(cfg, device)
    for part in parts:
        if lay.tp > 1:
            apply_tp(part, mesh["tp"], lay.sequence_parallel)
        apply_recompute(part, lay.recompute, preserve_rng=cfg.model.dropout > 0)
        if compiled:
            apply_compile(part)
        if lay.dp > 1:
            apply_dp(part, mesh, lay, param_dtype)
    if materialize:
        for part in parts:
            part.to_empty(device=device)
            part.tie_weights()  # to_empty gives plain (non-DTensor) tied parameters two copies
            init_local_shards(part, cfg.train.seed, coord)
    return BuiltModel(parts, ids, lay, coord, mesh, base)


@torch.no_grad()
def init_local_shards(part: GPT, seed: int, coord: Coord) -> None:
    """Initialise this rank's shard of every parameter of `part`: each is drawn whole on the
    device from its own generator and sliced by its placements (no communication)."""
    seen = set()
    for mod_name, module in part.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue  # a tied parameter, reached again through its other module
            seen.add(id(p))
            fqn = plain_name(f"{mod_name}.{pname}" if mod_name else pname)
            full = torch.empty(p.shape, dtype=p.dtype, device=local_tensor(p).device)
            init_parameter(part, module, fqn, pname, full, seed)
            local_tensor(p).copy_(local_slice(full, p, coord) if isinstance(p, DTensor) else full)


def local_slice(full: torch.Tensor, p: DTensor, coord: Coord) -> torch.Tensor:
    """This rank (at `coord`)'s piece of `full` for the sharded parameter `p`. Shardings are
    undone in the order they were applied, innermost mesh dimension first: tensor parallelism cut
    the whole tensor, then FSDP2 cut dim 0 of the TP piece into torch.chunk-sized shards (the
    last ones shorter or empty)."""
    coords = [getattr(coord, name) for name in p.device_mesh.mesh_dim_names]
    for i in reversed(range(p.device_mesh.ndim)):
        dim = getattr(p.placements[i], "dim", None)  # Shard, or FSDP2's _StridedShard over TP
        if dim is not None:
            n = p.device_mesh.size(i)
            chunks = list(torch.chunk(full, n, dim=dim))
            chunks += [full.narrow(dim, 0, 0)] * (n - len(chunks))
            full = chunks[coords[i]]
    return full



def convert_to_float8(model: GPT, device: torch.device, lay: Layout) -> None:
    """Swap the blocks' linear layers for torchao's float8 training layers (the output layer and
    embeddings stay in bf16). An optional extra: `pip install -e .[float8]`."""
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
        raise ConfigError("train.float8 needs an NVIDIA GPU with float8 tensor cores (sm89+: "
                          "Ada, Hopper or newer)")
    if lay.tp > 1:
        raise ConfigError("train.float8 with parallel.tp > 1 is not supported; use FSDP "
                          "(parallel.dp_shard) for float8 runs")
    try:
        from torchao.float8 import convert_to_float8_training
    except ImportError:
        raise UserError("train.float8 needs torchao: pip install -e .[float8]") from None

    def blocks_only(module: nn.Module, fqn: str) -> bool:
        # float8 GEMMs need both dimensions divisible by 16
        return (fqn.startswith("layers.") and isinstance(module, nn.Linear)
                and module.in_features % 16 == 0 and module.out_features % 16 == 0)

    convert_to_float8_training(model, module_filter_fn=blocks_only)
