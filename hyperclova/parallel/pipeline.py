"""Pipeline parallelism: cut the plain model into stages and run them with a schedule from
`torch.distributed.pipelining` (GPipe, 1F1B, interleaved 1F1B, zero-bubble variants).

Stage s of S = pp*vpp holds layers [s*L/S, (s+1)*L/S); the first stage also holds the embeddings,
the last one the final LayerNorm and the output projection. Stages are placed on pipeline ranks in
a loop: stage s on rank s % pp.
Each stage is a `GPT` with the other parts set to None, so its parameter names (and checkpoint
keys) are those of the full model.
"""
from __future__ import annotations

import itertools

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.pipelining import PipelineStage
from torch.distributed.pipelining.schedules import (
    PipelineScheduleSingle,
    get_schedule_class,
)

from hyperclova.config import ModelConfig
from hyperclova.model.gpt import GPT
from hyperclova.parallel.mesh import SCHEDULES


def stage_ids(pp_rank: int, pp: int, vpp: int) -> list[int]:
    """Global stage indices held by pipeline rank `pp_rank`, in execution order."""
    return [pp_rank + v * pp for v in range(vpp)]


def stage_layers(stage: int, n_stages: int, n_layers: int) -> range:
    per = n_layers // n_stages
    return range(stage * per, (stage + 1) * per)


def cut_stage(cfg: ModelConfig, stage: int, n_stages: int) -> GPT:
    """A GPT on the meta device holding only stage `stage`'s parts (materialise it afterwards)."""
    with torch.device("meta"):
        model = GPT(cfg)
    keep = {str(i) for i in stage_layers(stage, n_stages, cfg.n_layers)}
    for key in list(model.layers.keys()):
        if key not in keep:
            del model.layers[key]
    if stage > 0:
        model.tok_emb = model.pos_emb = None
    if stage < n_stages - 1:
        model.ln_f = model.lm_head = None
    return model


def build_schedule(stages: list[nn.Module], stage_idx: list[int], n_stages: int,
                   device: torch.device, group: dist.ProcessGroup, schedule: str,
                   n_micro: int, loss_fn):
    """Wrap this rank's stage modules in PipelineStages and a schedule that averages the
    per-micro-batch mean losses' gradients over `n_micro` (scale_grads)."""
    pstages = [PipelineStage(m, i, n_stages, device, group=group) for m, i in zip(stages, stage_idx)]
    cls = get_schedule_class(SCHEDULES[schedule][0])
    if issubclass(cls, PipelineScheduleSingle):
        return cls(pstages[0], n_microbatches=n_micro, loss_fn=loss_fn, scale_grads=True)
    return cls(pstages, n_microbatches=n_micro, loss_fn=loss_fn, scale_grads=True)


def build_eval_schedule(stages: list[nn.Module], stage_idx: list[int], n_stages: int,
                        device: torch.device, group: dist.ProcessGroup, schedule: str, loss_fn):
    """A forward-only schedule over whole (un-split) evaluation batches."""
    pstages = [PipelineStage(m, i, n_stages, device, group=group) for m, i in zip(stages, stage_idx)]
    if len(pstages) == 1:
        return get_schedule_class("GPipe")(pstages[0], n_microbatches=1, loss_fn=loss_fn)
    return get_schedule_class("LoopedBFS")(pstages, n_microbatches=1, loss_fn=loss_fn)


def tied_embedding_groups(mesh, first_stage_rank: int, last_stage_rank: int):
    """Megatron's embedding group: for every (dp, tp) coordinate, the global ranks holding the
    first and the last stage. Every rank must create every group (in the same order); each keeps
    the one it belongs to. None when both stages live on the same pipeline rank."""
    if first_stage_rank == last_stage_rank:
        return None
    grid = mesh.mesh  # (pp, dp_replicate, dp_shard, tp) global ranks
    mine = None
    me = dist.get_rank()
    for i, j, k in itertools.product(*(range(n) for n in grid.shape[1:])):
        ranks = sorted({int(grid[first_stage_rank, i, j, k]), int(grid[last_stage_rank, i, j, k])})
        group = dist.new_group(ranks)
        if me in ranks:
            mine = group
    return mine
