"""Pipeline parallelism: cut the plain model into stages and run them with a schedule from
`torch.distributed.pipelining` (GPipe, 1F1B, interleaved 1F1B, zero-bubble variants).

Which layers a stage holds, and which pipeline rank runs it, is the Layout's rule
(hyperclova/parallel/layout.py: stage s of S = pp*vpp holds layers [s*L/S, (s+1)*L/S) and runs on
rank s % pp); the first stage also holds the embeddings (and an input adapter, such as P-tuning's
prompt encoder), the last one the final LayerNorm and the output projection.
Each stage is a copy of the (meta-device) model with the other parts removed, so its parameter
names (and checkpoint keys) are those of the full model.
"""
from __future__ import annotations

import copy
import itertools

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.pipelining import PipelineStage
from torch.distributed.pipelining.schedules import (
    PipelineScheduleSingle,
    get_schedule_class,
)

from hyperclova.model.gpt import GPT
from hyperclova.parallel.layout import SCHEDULES, Layout


def cut_stage(model: GPT, stage: int, lay: Layout) -> GPT:
    """A copy of `model` (on the meta device: copying costs no memory) holding only the parts of
    pipeline stage `stage` of `lay`."""
    part = copy.deepcopy(model)
    keep = {str(i) for i in lay.stage_layers(stage, len(model.layers))}
    for key in list(part.layers.keys()):
        if key not in keep:
            del part.layers[key]
    if stage > 0:
        part.tok_emb = part.pos_emb = part.input_adapter = None
    if stage < lay.n_stages - 1:
        part.ln_f = part.lm_head = None
    return part


def build_schedule(stages: list[nn.Module], stage_idx: list[int], n_stages: int,
                   device: torch.device, group: dist.ProcessGroup, schedule: str,
                   n_micro: int, loss_fn):
    """Wrap this rank's stage modules in PipelineStages and a schedule that averages the
    per-micro-batch mean losses' gradients over `n_micro` (scale_grads). The last stage returns
    hidden states; `loss_fn(hidden, labels)` applies the output layer with the loss."""
    pstages = [PipelineStage(m, i, n_stages, device, group=group) for m, i in zip(stages, stage_idx)]
    cls = get_schedule_class(SCHEDULES[schedule][0])
    if issubclass(cls, PipelineScheduleSingle):
        return cls(pstages[0], n_microbatches=n_micro, loss_fn=loss_fn, scale_grads=True)
    return cls(pstages, n_microbatches=n_micro, loss_fn=loss_fn, scale_grads=True)


def build_eval_schedule(stages: list[nn.Module], stage_idx: list[int], n_stages: int,
                        device: torch.device, group: dist.ProcessGroup):
    """A forward-only schedule over one whole (un-split) batch; `eval()` returns the last stage's
    hidden states on the rank that runs it. Stages learn their activation shapes on the first
    call, so the caller keeps one schedule per batch shape."""
    pstages = [PipelineStage(m, i, n_stages, device, group=group) for m, i in zip(stages, stage_idx)]
    if len(pstages) == 1:
        return get_schedule_class("GPipe")(pstages[0], n_microbatches=1)
    return get_schedule_class("LoopedBFS")(pstages, n_microbatches=1)


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
