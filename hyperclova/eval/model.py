"""The model an evaluation runs: one process, data-parallel copies, or a parallel engine.

- one process: `hyperclova.generate.load_model` (a DCP run or step dir, a `to-hf` export, a
  consolidated safetensors file) wrapped in `PlainModel`;
- `torchrun` with only data parallelism: each rank loads the whole model and scores every
  world_size-th request (gloo on CPU, NCCL on GPU);
- `torchrun` with `parallel.tp`/`parallel.pp` > 1: the engine builds this rank's shard of the
  model in the layout given by the overrides and loads the DCP checkpoint into it (any layout it
  was written in); the scorer calls `engine.forward_eval`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist

from hyperclova.errors import UserError
from hyperclova.eval.scorer import PlainModel


@dataclass
class Loaded:
    model: object  # EvalModel
    model_cfg: object  # ModelConfig
    tokenizer_dir: Optional[str]
    layout: dict
    rank: int = 0
    step: Optional[int] = None  # the training step of a DCP checkpoint
    base: Optional[str] = None  # with an adapter: the base checkpoint it was applied to


class EngineModel:
    """The engine's `forward_eval` with the attributes the scorer reads."""

    def __init__(self, engine, seq_len: int, pad_to: int = 1):
        self.engine, self.seq_len = engine, seq_len
        self.dp_rank, self.dp_size = engine.dp_rank, engine.dp_size
        # Few distinct batch shapes: pipeline stages build a schedule per shape, and DTensor
        # (tensor parallelism) works out its sharding afresh for every new shape.
        self.pad_to = pad_to

    def forward_eval(self, tokens, reduce):
        return self.engine.forward_eval(tokens.to(self.engine.device), reduce)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: torch.device, timeout_s: int = 600) -> None:
    if dist.is_initialized():
        return
    from hyperclova.launch import discover

    env = discover()
    if device.type == "cuda":
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=env.rank,
                            world_size=env.world_size, timeout=timedelta(seconds=timeout_s))


def load_eval_model(checkpoint: Optional[str], device: str, overrides: list[str] | None = None,
                    adapter=None) -> Loaded:
    """`adapter`: a tuned checkpoint (hyperclova.tune.adapters.Adapter) applied to the base,
    which is `checkpoint` or, when None, the base the adapter names."""
    from hyperclova.config import load_config

    dev = torch.device(device)
    overrides = list(overrides or [])
    bad = [o for o in overrides if not o.startswith("parallel.")]
    if bad:
        raise UserError(f"only parallel.* overrides apply to evaluation, got {bad}")
    probe = load_config(None, overrides).parallel
    model_parallel = probe.tp * probe.pp > 1
    world = world_size()
    if world == 1 and not model_parallel:
        return _plain(checkpoint, dev, 0, 1, adapter)
    init_distributed(dev)
    world = dist.get_world_size()
    if not model_parallel:
        if probe.dp_replicate * probe.dp_shard not in (1, world):
            raise UserError(f"parallel.dp_replicate x dp_shard = {probe.dp_replicate * probe.dp_shard} "
                            f"but {world} processes run")
        return _plain(checkpoint, dev, dist.get_rank(), world, adapter)
    return _engine(checkpoint, dev, overrides, adapter)


def _plain(checkpoint: Optional[str], device: torch.device, rank: int, world: int,
           adapter=None) -> Loaded:
    from hyperclova.generate import load_model

    model, cfg = load_model(checkpoint, device, adapter)
    base = None
    if adapter is not None:
        from hyperclova.tune.adapters import resolve_base

        base = str(resolve_base(adapter, checkpoint))
    step = _step(str(adapter.path) if adapter is not None else checkpoint)
    return Loaded(PlainModel(model, rank, world), cfg.model, cfg.data.tokenizer,
                  {"dp": world, "tp": 1, "pp": 1}, rank, step, base)


def _step(checkpoint: str) -> Optional[int]:
    """The step a DCP checkpoint was saved at (None for exports and consolidated files)."""
    from hyperclova.eval.report import step_of
    from hyperclova.train.checkpoint import resolve_load_path

    p = Path(checkpoint)
    if not p.is_dir() or ((p / "config.json").is_file() and not (p / ".metadata").is_file()):
        return None
    return step_of(resolve_load_path(str(p)).name)


def _engine(checkpoint: Optional[str], device: torch.device, overrides: list[str],
            adapter=None) -> Loaded:
    from hyperclova.config import load_config
    from hyperclova.train.checkpoint import resolve_load_path
    from hyperclova.train.engine import build_engine

    transforms = ()
    if adapter is not None:
        from hyperclova.tune.adapters import inference_transforms, resolve_base

        path = resolve_base(adapter, checkpoint)
        transforms = inference_transforms(adapter)
    else:
        path = resolve_load_path(str(checkpoint))
    probe = load_config(Path(path) / "config.yaml", overrides)
    # The checkpoint's training batch settings do not apply to evaluation (forward_eval runs each
    # batch whole), but the engine's layout check and its training schedule read them, and the
    # run's own may not divide this layout (trained with dp=8, evaluated with pp=2 on 2 ranks):
    # give it ones that fit any layout.
    n_micro = probe.parallel.pp * probe.parallel.vpp
    dp = probe.parallel.dp_replicate * probe.parallel.dp_shard
    neutral = ["train.micro_batch_size=1", f"train.global_batch_size={n_micro * dp}",
               f"parallel.microbatches={n_micro}"]
    cfg = load_config(Path(path) / "config.yaml", neutral + overrides)
    engine = build_engine(cfg, device, transforms)
    engine.load_weights(str(path))
    if adapter is not None:
        from hyperclova.tune.adapters import load_adapter_weights

        load_adapter_weights(engine.model_parts, adapter)
        cfg.data.tokenizer = adapter.cfg.data.tokenizer or cfg.data.tokenizer
    p = cfg.parallel
    model = EngineModel(engine, cfg.model.seq_len, pad_to=64)
    step = _step(str(adapter.path) if adapter is not None else checkpoint)
    return Loaded(model, cfg.model, cfg.data.tokenizer,
                  {"dp": model.dp_size, "tp": p.tp, "pp": p.pp}, dist.get_rank(), step,
                  str(path) if adapter is not None else None)
