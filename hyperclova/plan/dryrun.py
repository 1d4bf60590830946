"""Dry run: build, through the engine's own build path, the model shard each chosen rank of a
layout would hold, and measure its parameters, gradients and optimizer state, without a GPU or
any communication.

    python -m hyperclova.plan.dryrun --config configs/82b.yaml
    python -m hyperclova.train --dry-run --config configs/82b.yaml --ranks 0,1023

For each rank a fake process group of the layout's world size stands in for the cluster (torch's
`fake` backend: collectives do nothing), and `hyperclova.parallel.build.build_parts` runs exactly
as the trainer runs it (pipeline split, tensor/sequence parallel, recompute, FSDP2/HSDP/DDP),
stopping before materialisation: every tensor stays on the meta device. One real AdamW step on
meta tensor of the local shards' size allocates the optimizer state. Nothing is computed, so 82B
on 1,024 ranks runs in seconds. Activation memory is not measured; the planner's model is printed
beside it.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import time
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from hyperclova.config import Config, load_config
from hyperclova.errors import UserError, cli_main
from hyperclova.parallel.build import build_parts
from hyperclova.parallel.layout import (
    Coord,
    Layout,
    accumulation_steps,
    check_layout,
    pipeline_microbatches,
)
from hyperclova.plan.hardware import DEFAULT_MEMORY, GiB
from hyperclova.plan.memory import activation_bytes


@dataclass(frozen=True)
class RankReport:
    rank: int
    coord: Coord
    layers: list[int]
    embedding: bool
    head: bool
    params: int  # parameters of the rank's model shard (tied ones once), before FSDP sharding
    local_params: int  # elements of this rank's FSDP2 shards
    param_bytes: int
    grad_bytes: int
    optim_bytes: int
    compute_copy_bytes: int  # bf16 copy: the whole shard, or two gathered blocks under FSDP
    grad_accum_bytes: int  # unsharded fp32 gradients between micro-batches under FSDP
    activation_bytes: float  # the planner's estimate, not a measurement
    seconds: float

    @property
    def state_bytes(self) -> int:
        return self.param_bytes + self.grad_bytes + self.optim_bytes


@contextlib.contextmanager
def fake_process_group(rank: int, world_size: int):
    """A process group in which this process plays `rank` of `world_size` and no collective
    communicates (torch's testing backend, as torchtitan's memory estimator uses it)."""
    if dist.is_initialized():
        raise UserError("the dry run needs its own process group, but one is already running in "
                        "this process")
    try:
        from torch.testing._internal.distributed.fake_pg import FakeStore  # registers "fake"
    except ImportError as e:  # pragma: no cover - present in torch 2.1 to 2.13
        raise UserError(f"this torch build has no fake process group for the dry run: {e}")
    dist.init_process_group("fake", store=FakeStore(), rank=rank, world_size=world_size)
    try:
        yield
    finally:
        dist.destroy_process_group()
        # DTensor caches sharding decisions by mesh, and meshes of two ranks compare equal: the
        # next rank measured in this process must not reuse this one's mesh objects.
        try:
            DTensor._op_dispatcher.sharding_propagator.propagate_op_sharding.cache_clear()
        except AttributeError:  # pragma: no cover - another torch version's internals
            pass


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


def _tp_numel(p: torch.Tensor) -> int:
    """Elements of `p` held by one TP rank before data-parallel sharding."""
    shape = list(p.shape)
    if isinstance(p, DTensor):
        names = p.device_mesh.mesh_dim_names or ()
        for name, pl, size in zip(names, p.placements, p.device_mesh.shape):
            if name == "tp" and getattr(pl, "dim", None) is not None:
                shape[pl.dim] = math.ceil(shape[pl.dim] / size)
    return math.prod(shape)


def measure_rank(cfg: Config, rank: int, n_micro: int) -> RankReport:
    start = time.perf_counter()
    lay = Layout.from_config(cfg)
    with fake_process_group(rank, lay.world_size):
        built = build_parts(cfg, torch.device("cpu"), materialize=False)
        params = list({id(p): p for m in built.parts for p in m.parameters()}.values())
        local = [_local(p) for p in params]
        blocks = [sum(_tp_numel(p) for p in b.parameters()) for m in built.parts
                  for b in m.layers.values()]
    # AdamW's state is elementwise (two moments per element): one flat meta tensor of all local
    # elements gets the same state as the shards would, in one step instead of hundreds.
    flat = torch.nn.Parameter(torch.empty(sum(p.numel() for p in local), device="meta"))
    flat.grad = torch.zeros_like(flat)
    opt = torch.optim.AdamW([flat], lr=1e-4, foreach=False)
    opt.step()
    optim = sum(t.numel() * t.element_size() for state in opt.state.values()
                for t in state.values() if t.dim() > 0)  # the scalar `step` counter aside
    n_tp = sum(_tp_numel(p) for p in params)
    parts = built.parts
    return RankReport(
        rank=rank, coord=built.coord,
        layers=sorted(int(k) for m in parts for k in m.layers),
        embedding=any(m.tok_emb is not None for m in parts),
        head=any(m.lm_head is not None for m in parts),
        params=n_tp, local_params=sum(p.numel() for p in local),
        param_bytes=sum(p.numel() * p.element_size() for p in local),
        grad_bytes=sum(p.numel() * p.element_size() for p in local),  # fp32, like the weights
        optim_bytes=optim, compute_copy_bytes=_compute_copy(lay, n_tp, blocks),
        grad_accum_bytes=_grad_accum(lay, n_tp, n_micro),
        activation_bytes=activation_bytes(cfg.model, lay, built.coord.pp, n_micro,
                                          loss_chunk=cfg.train.loss_chunk_tokens),
        seconds=time.perf_counter() - start)


def _compute_copy(lay: Layout, n_tp: int, blocks: list[int]) -> int:
    per_param = DEFAULT_MEMORY.compute_copy_bytes
    if lay.dp_shard == 1 or lay.pp > 1 or lay.zero_stage == 2:  # weights stay gathered
        return n_tp * per_param
    return 2 * max(blocks, default=0) * per_param  # FSDP2 holds the gathered block + the next


def _grad_accum(lay: Layout, n_tp: int, n_micro: int) -> int:
    """FSDP2 keeps unsharded gradients between micro-batches when it reduces once per step."""
    if lay.dp_shard == 1 or n_micro == 1:
        return 0
    return n_tp * DEFAULT_MEMORY.grad_bytes


def _spans(layers: list[int]) -> str:
    """'0-3,32-35' for the interleaved chunks of a rank."""
    if not layers:
        return "-"
    out, start = [], layers[0]
    for prev, cur in zip(layers, layers[1:] + [None]):
        if cur != prev + 1:
            out.append(f"{start}-{prev}" if prev != start else str(start))
            start = cur
    return ",".join(out)


def default_ranks(lay: Layout) -> list[int]:
    """TP rank 0 of data-parallel replica 0 of every pipeline stage."""
    return [lay.rank(Coord(pp=s)) for s in range(lay.pp)]


def dry_run(cfg: Config, ranks: Sequence[int] | None = None) -> list[RankReport]:
    """Measure the shards of `ranks` (default: one rank per pipeline stage) of cfg's layout."""
    lay = check_layout(cfg)  # exactly what the trainer rejects, in its words
    for r in ranks or ():
        lay.coord(r)  # a rank outside the world is a user error
    # the pipeline splits a step into its micro-batches; without one, the engine accumulates
    n_micro = pipeline_microbatches(cfg, lay.dp) if lay.pp > 1 else accumulation_steps(cfg, lay.dp)
    return [measure_rank(cfg, r, n_micro) for r in (default_ranks(lay) if ranks is None else ranks)]


def format_report(cfg: Config, reports: list[RankReport], gpu_memory: float | None = None) -> str:
    lay = Layout.from_config(cfg)
    gib = lambda x: f"{x / GiB:8.2f}"  # noqa: E731
    lines = [f"dry run: {cfg.model.preset or 'custom'} model, world {lay.world_size} = pp {lay.pp} x "
             f"dp_replicate {lay.dp_replicate} x dp_shard {lay.dp_shard} x tp {lay.tp}, vpp "
             f"{lay.vpp}, micro-batch {lay.micro_batch_size}, recompute {lay.recompute}, "
             f"zero stage {lay.zero_stage}",
             f"{'rank':>6} {'pp':>3} {'tp':>3} {'layers':>11} {'emb':>3} {'head':>4} {'params':>15} "
             f"{'local':>15} {'wts GiB':>8} {'grad GiB':>8} {'adam GiB':>8} {'act GiB*':>8} "
             f"{'total':>8}"]
    for r in reports:
        span = _spans(r.layers)
        total = r.state_bytes + r.activation_bytes + r.compute_copy_bytes + r.grad_accum_bytes
        lines.append(f"{r.rank:>6} {r.coord.pp:>3} {r.coord.tp:>3} {span:>11} "
                     f"{'y' if r.embedding else '-':>3} {'y' if r.head else '-':>4} {r.params:>15,} "
                     f"{r.local_params:>15,} {gib(r.param_bytes)} {gib(r.grad_bytes)} "
                     f"{gib(r.optim_bytes)} {gib(r.activation_bytes)} {gib(total)}"
                     + ("  OVER" if gpu_memory and total > gpu_memory else ""))
    lines.append("* activations: Korthikanti et al. estimate (hyperclova.plan.memory). Weights, "
                 "gradients and AdamW state are measured on the engine's own build (meta device, "
                 "fake process group); total adds the bf16 compute copy and, under FSDP with "
                 "several micro-batches, the unsharded gradients.")
    lines.append(f"measured {len(reports)} rank(s) in {sum(r.seconds for r in reports):.2f} s")
    return "\n".join(lines)


def check_plan_row(job, row) -> str:
    """Dry-run the fullest stage of a planner row (search.Job, search.PlanRow) and compare its
    weights + gradients + AdamW bytes with the planner's."""
    cfg = load_config(None, row.layout.overrides(job.global_batch))
    cfg.model = job.model
    (rep,) = dry_run(cfg, default_ranks(row.layout)[row.worst_stage:row.worst_stage + 1])
    planned = row.memory.params + row.memory.grads + row.memory.optimizer
    return (format_report(cfg, [rep], job.cluster.gpu.memory)
            + f"\nplanner {planned:,.0f} B vs dry run {rep.state_bytes:,} B of weights + grads + "
              f"AdamW on stage {row.worst_stage} ({(rep.state_bytes / planned - 1) * 100:+.3f}%; "
              "FSDP shards round rows)")


def parse_ranks(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--ranks {text!r}: expected comma-separated integers") from None


@cli_main
def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", help="YAML config file")
    ap.add_argument("--ranks", help="comma-separated global ranks (default: one per stage)")
    ap.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model=82b parallel.tp=8")
    args = ap.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    print(format_report(cfg, dry_run(cfg, parse_ranks(args.ranks))))


if __name__ == "__main__":
    main()
