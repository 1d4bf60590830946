"""Dry run: build on the meta device the model shard each chosen rank of a layout would hold, and
measure its parameters, gradients and optimizer state, without any GPU or communication.

    python -m hyperclova.plan.dryrun --config configs/x.yaml model=82b parallel.tp=8 parallel.pp=8

For a rank at mesh coordinates (pp, dp_replicate, dp_shard, tp) it keeps that pipeline rank's
layer chunks (and the embedding / head where they live), replaces every tensor-parallel module by
one with the local shard's shape (column-parallel qkv/fc1 split their outputs, row-parallel
proj/fc2 their inputs, the embedding its vocabulary), cuts each parameter into its FSDP2 dim-0
shard when dp_shard > 1, gives every local parameter a gradient and takes one real AdamW
step on the meta tensors, so the optimizer allocates its state. Nothing is computed, so 82B runs in
seconds on a laptop. Activation memory is not measured; the planner's model is printed beside it.
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, replace
from typing import Sequence

import torch
import torch.nn as nn

from hyperclova.config import Config, ModelConfig, load_config
from hyperclova.errors import UserError, cli_main
from hyperclova.model.gpt import GPT, Block
from hyperclova.plan.hardware import DEFAULT_MEMORY, GiB
from hyperclova.plan.layout import (
    TP_PLAN,
    Coord,
    Layout,
    chunk_layers,
    coord_rank,
    has_embedding,
    has_head,
    rank_coord,
)
from hyperclova.parallel.mesh import accumulation_steps, check_layout, pipeline_microbatches
from hyperclova.paths import find_config
from hyperclova.plan.memory import activation_bytes


@dataclass(frozen=True)
class RankReport:
    rank: int
    coord: Coord
    layers: list[int]
    embedding: bool
    head: bool
    params: int  # parameters of the rank's model shard (tied ones once), before FSDP sharding
    local_params: int  # elements of this rank's FSDP2 shards (torch.chunk sizes, no padding)
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


def _shard_linear(lin: nn.Linear, plan: str, tp: int) -> nn.Linear:
    out_f, in_f = lin.out_features, lin.in_features
    if plan == "colwise":
        out_f //= tp
    else:
        in_f //= tp
    return nn.Linear(in_f, out_f, bias=lin.bias is not None)


def build_rank_model(model: ModelConfig, lay: Layout, coord: Coord) -> GPT:
    """The plain model cut and sharded to what `coord` holds, on the meta device."""
    keep = [i for chunk in chunk_layers(model.n_layers, lay.pp, lay.vpp, coord.pp) for i in chunk]
    with torch.device("meta"):
        gpt = GPT(replace(model, n_layers=0))  # blocks are added below under their global keys
        gpt.cfg = model
        for i in keep:
            gpt.layers[str(i)] = Block(model)
        for block in gpt.layers.values():
            for name, plan in TP_PLAN.items():
                parent, attr = name.split(".")
                sub = getattr(block, parent)
                setattr(sub, attr, _shard_linear(getattr(sub, attr), plan, lay.tp))
        first, last = has_embedding(lay, coord.pp), has_head(lay, coord.pp)
        gpt.tok_emb = nn.Embedding(model.vocab_size // lay.tp, model.d_model) if first else None
        gpt.pos_emb = gpt.pos_emb if first else None
        gpt.ln_f = gpt.ln_f if last else None
        # the head is tied to the embedding on the same rank, else it holds its own copy
        gpt.lm_head = nn.Linear(model.d_model, model.vocab_size // lay.tp, bias=False) if last else None
        gpt.tie_weights()
    return gpt


def _fsdp_shards(params: list[nn.Parameter], dp_shard: int, index: int) -> list[nn.Parameter]:
    """This rank's FSDP2 shards: dim 0 of each parameter cut as torch.chunk does (equal chunks of
    ceil(rows / dp_shard), the last ones shorter or empty); AdamW state follows these sizes."""
    if dp_shard == 1:
        return params
    out = []
    for p in params:
        step = math.ceil(p.shape[0] / dp_shard)
        rows = max(0, min(step, p.shape[0] - index * step))
        out.append(nn.Parameter(torch.empty((rows, *p.shape[1:]), dtype=p.dtype, device="meta")))
    return out


def measure_rank(cfg: Config, lay: Layout, rank: int, n_micro: int) -> RankReport:
    start = time.perf_counter()
    coord = rank_coord(lay, rank)
    gpt = build_rank_model(cfg.model, lay, coord)
    params = list(gpt.parameters())  # deduplicates the tied head
    local = _fsdp_shards(params, lay.dp_shard, coord.dp_shard)
    for p in local:
        p.grad = torch.zeros_like(p)
    opt = torch.optim.AdamW(local, lr=1e-4, foreach=False)
    opt.step()
    optim = sum(t.numel() * t.element_size() for state in opt.state.values()
                for t in state.values() if t.dim() > 0)  # the scalar `step` counters aside
    return RankReport(
        rank=rank, coord=coord, layers=sorted(int(k) for k in gpt.layers),
        embedding=gpt.tok_emb is not None, head=gpt.lm_head is not None,
        params=sum(p.numel() for p in params), local_params=sum(p.numel() for p in local),
        param_bytes=sum(p.numel() * p.element_size() for p in local),
        grad_bytes=sum(p.grad.numel() * p.grad.element_size() for p in local),
        optim_bytes=optim, compute_copy_bytes=_compute_copy(gpt, lay, params),
        grad_accum_bytes=_grad_accum(lay, params, n_micro),
        activation_bytes=activation_bytes(cfg.model, lay, coord.pp, n_micro),
        seconds=time.perf_counter() - start)


def _compute_copy(gpt: GPT, lay: Layout, params: list[nn.Parameter]) -> int:
    per_param = DEFAULT_MEMORY.compute_copy_bytes
    if lay.dp_shard == 1 or lay.pp > 1:  # the engine keeps a stage's weights gathered
        return sum(p.numel() for p in params) * per_param
    block = max((sum(p.numel() for p in b.parameters()) for b in gpt.layers.values()), default=0)
    return 2 * block * per_param  # FSDP2 holds the gathered block and prefetches the next


def _grad_accum(lay: Layout, params: list[nn.Parameter], n_micro: int) -> int:
    """FSDP2 keeps unsharded gradients between micro-batches when it reduces once per step."""
    if lay.dp_shard == 1 or n_micro == 1:
        return 0
    return sum(p.numel() for p in params) * DEFAULT_MEMORY.grad_bytes


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
    return [coord_rank(lay, Coord(pp=s, dp_replicate=0, dp_shard=0, tp=0)) for s in range(lay.pp)]


def dry_run(cfg: Config, ranks: Sequence[int] | None = None) -> list[RankReport]:
    """Measure the shards of `ranks` (default: one rank per pipeline stage) of cfg's layout."""
    lay = Layout.from_config(cfg.parallel, cfg.train.micro_batch_size)
    check_layout(cfg)  # exactly what the trainer rejects, in its words
    # the pipeline splits a step into its micro-batches; without one, the engine accumulates
    n_micro = pipeline_microbatches(cfg, lay.dp) if lay.pp > 1 else accumulation_steps(cfg, lay.dp)
    return [measure_rank(cfg, lay, r, n_micro) for r in (default_ranks(lay) if ranks is None else ranks)]


def format_report(cfg: Config, reports: list[RankReport], gpu_memory: float | None = None) -> str:
    lay = Layout.from_config(cfg.parallel, cfg.train.micro_batch_size)
    gib = lambda x: f"{x / GiB:8.2f}"  # noqa: E731
    lines = [f"dry run: {cfg.model.preset or 'custom'} model, world {lay.world_size} = pp {lay.pp} x "
             f"dp_replicate {lay.dp_replicate} x dp_shard {lay.dp_shard} x tp {lay.tp}, vpp "
             f"{lay.vpp}, micro-batch {lay.micro_batch_size}, recompute {lay.recompute}",
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
                 "gradients and AdamW state are measured on meta; total adds the bf16 compute copy "
                 "and, under FSDP with several micro-batches, the unsharded gradients.")
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
    ap.add_argument("--config", help="YAML config file, or a shipped one by name (e.g. demo, 1.3b)")
    ap.add_argument("--ranks", help="comma-separated global ranks (default: one per stage)")
    ap.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model=82b parallel.tp=8")
    args = ap.parse_args(argv)
    cfg = load_config(find_config(args.config) if args.config else None, args.overrides)
    print(format_report(cfg, dry_run(cfg, parse_ranks(args.ranks))))


if __name__ == "__main__":
    main()
