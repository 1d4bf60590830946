"""Offline resharding: DCP checkpoint in one layout -> DCP checkpoint for another.

A DCP checkpoint already reshards when it is loaded: every layout saves the same logical keys with
global shapes (plain FQNs, FQN-keyed optimizer state) and each rank reads the pieces it needs. So
*any* checkpoint loads into *any* layout directly, and `reshard` is not needed for that.

What `reshard` adds is a rewritten copy: every tensor gathered whole (model, optimizer state, RNG,
loop position, all of it) and written layout-free in files of at most 256 MiB (dcp.FILE_BYTES), plus a config.yaml with the
new `parallel.*` settings. Useful to move a checkpoint written by thousands of ranks (thousands of
shard files, each rank's slices) to a machine that will read it with a few, to archive it, or to
hand a run to a new layout with a config that already says so. Memory stays near one output
file (or one tensor, when a tensor is larger).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from hyperclova.convert.dcp import (
    CheckpointReader,
    check_new_checkpoint_dir,
    nested,
    read_run_config,
    resolve_step_dir,
    write_step,
)
from hyperclova.convert.to_hf import Summary, check_model_keys
from hyperclova.errors import UserError
from hyperclova.train.checkpoint import MARKER


def reshard(checkpoint: str | Path, out_dir: str | Path, overrides: list[str] | None = None,
            config_path: str | Path | None = None) -> Summary:
    """Copy the complete training state into `out_dir/step_N` (same step) with a new config;
    `out_dir` must be new or empty.

    overrides: dotted config overrides for the new layout, e.g. ["parallel.tp=2", "parallel.pp=4"];
    the model section cannot change (the weights would not fit it)."""
    overrides = list(overrides or [])
    for item in overrides:
        if item.split("=", 1)[0].strip().startswith("model"):
            raise UserError(f"override {item!r}: reshard keeps the model as it is; only the layout "
                            "(parallel.*) and other run settings may change")
    check_new_checkpoint_dir(Path(out_dir))  # before any work
    step_dir = resolve_step_dir(checkpoint)
    cfg = read_run_config(step_dir, config_path, overrides)
    reader = CheckpointReader(step_dir)
    check_model_keys(reader, cfg.model)  # a --config FILE must describe these weights too

    flat, producers, n_params = {}, {}, 0
    small = [k for k in reader.keys if reader.tensor_meta(k) is None]
    flat.update(reader.load(small))  # pickled objects (loop counters, param-group settings)
    for key in reader.keys:
        md = reader.tensor_meta(key)
        if md is None:
            continue
        flat[key] = torch.empty(md.size, dtype=md.properties.dtype, device="meta")
        producers[key] = _producer(reader, key)
        if key.startswith("model."):
            n_params += md.size.numel()
    final = write_step(Path(out_dir), step_of(step_dir), cfg, nested(flat, reader.nesting()), producers)
    size = sum(p.stat().st_size for p in final.iterdir())
    return Summary(step_dir, final, len(producers), n_params, size, [])


def _producer(reader: CheckpointReader, key: str):
    return lambda: reader.load([key])[key]


def step_of(step_dir: Path) -> int:
    try:
        return int(json.loads((step_dir / MARKER).read_text())["step"])
    except (ValueError, KeyError, OSError):
        raise UserError(f"{step_dir / MARKER}: cannot read the step number") from None
