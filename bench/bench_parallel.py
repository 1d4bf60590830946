"""Benchmarks of the parallel layouts on CPU/gloo (docs/parallel.md).

    python bench/bench_parallel.py layouts   # step time of each layout, tiny model
    python bench/bench_parallel.py bubble    # pipeline bubble fraction vs theory

`layouts` runs the engine for a few steps per layout and reports the median step time.
`bubble` isolates the schedule from CPU contention: every stage "computes" by sleeping (forward t,
backward 2t, per micro-batch, split over the rank's virtual stages), so the measured bubble
1 - busy/step is the schedule's own, comparable with (p-1)/(m+p-1) for GPipe/1F1B and
(p-1)/(v*m+p-1) for interleaved 1F1B with v stages per rank.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = ["model=tiny", "model.seq_len=128", "train.global_batch_size=8", "train.micro_batch_size=2",
        "train.device=cpu", "model.dropout=0.0"]
LAYOUTS = {  # name: (world, overrides)
    "single": (1, []),
    "tp2": (2, ["parallel.tp=2"]),
    "tp2+sp": (2, ["parallel.tp=2", "parallel.sequence_parallel=true"]),
    "pp2 1f1b": (2, ["parallel.pp=2", "parallel.schedule=1f1b"]),
    "pp2 interleaved v2": (2, ["parallel.pp=2", "parallel.vpp=2",
                               "parallel.schedule=interleaved_1f1b"]),
    "dp2 ddp": (2, ["parallel.dp_replicate=2"]),
    "dp2 fsdp": (2, ["parallel.dp_shard=2"]),
    "tp2 x dp2": (4, ["parallel.tp=2", "parallel.dp_replicate=2"]),
    "pp2 x tp2": (4, ["parallel.pp=2", "parallel.tp=2"]),
}
SLEEP_F = 0.02  # seconds of forward "compute" per micro-batch per rank; backward is twice that


def torchrun(world: int, *args: str) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={world}", __file__, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)


# -- step time of each layout --------------------------------------------------------------------

def layout_worker(out: str, overrides: list[str], steps: int) -> None:
    import torch
    import torch.distributed as dist

    from hyperclova.config import load_config
    from hyperclova.train.engine import build_engine

    dist.init_process_group("gloo")
    cfg = load_config(None, TINY + overrides)
    engine = build_engine(cfg, torch.device("cpu"))
    dp, n = engine.dp_size, cfg.train.global_batch_size
    n_micro = n // (cfg.train.micro_batch_size * dp)
    g = torch.Generator().manual_seed(0)
    seq = torch.randint(0, cfg.model.vocab_size, (n // dp, cfg.model.seq_len + 1), generator=g)
    times = []
    for _ in range(steps):
        dist.barrier()
        t0 = time.perf_counter()
        engine.forward_backward(seq[:, :-1], seq[:, 1:], n_micro)
        dist.barrier()
        times.append(time.perf_counter() - t0)
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps(times[2:]))  # the first steps warm up
    dist.destroy_process_group()


def bench_layouts(steps: int) -> None:
    print("| layout | processes | median step (s) | vs single |\n|---|---|---|---|")
    base = None
    for name, (world, overrides) in LAYOUTS.items():
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            torchrun(world, "layout-worker", f.name, str(steps), *overrides)
            step = statistics.median(json.loads(Path(f.name).read_text()))
        base = base or step
        print(f"| {name} | {world} | {step:.3f} | {step / base:.2f}x |", flush=True)


# -- pipeline bubble -----------------------------------------------------------------------------

def bubble_worker(out: str, schedule: str, vpp: int, n_micro: int) -> None:
    import torch
    import torch.distributed as dist
    import torch.nn as nn
    from torch.distributed.pipelining import PipelineStage
    from torch.distributed.pipelining.schedules import PipelineScheduleSingle, get_schedule_class

    from hyperclova.parallel.layout import SCHEDULES

    class Sleep(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, t):
            ctx.t = t
            time.sleep(t)
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            time.sleep(2 * ctx.t)
            return g.clone(), None

    class Stage(nn.Module):
        def __init__(self, t):
            super().__init__()
            self.w = nn.Parameter(torch.ones(8))
            self.t = t

        def forward(self, x):
            return Sleep.apply(x * self.w, self.t)

    dist.init_process_group("gloo")
    rank, pp = dist.get_rank(), dist.get_world_size()
    ids = [rank + v * pp for v in range(vpp)]
    n_stages = pp * vpp
    stages = [PipelineStage(Stage(SLEEP_F / vpp), i, n_stages, torch.device("cpu"))
              for i in ids]
    cls = get_schedule_class(SCHEDULES[schedule][0])
    loss = lambda out, tgt: out.sum()  # noqa: E731
    sched = (cls(stages[0], n_microbatches=n_micro, loss_fn=loss)
             if issubclass(cls, PipelineScheduleSingle)
             else cls(stages, n_microbatches=n_micro, loss_fn=loss))
    x, tgt = torch.ones(n_micro, 8), torch.ones(n_micro, 8)
    times = []
    for _ in range(4):
        dist.barrier()
        t0 = time.perf_counter()
        args = (x,) if 0 in ids else ()
        sched.step(*args, target=tgt if n_stages - 1 in ids else None)
        dist.barrier()
        times.append(time.perf_counter() - t0)
    if rank == 0:
        Path(out).write_text(json.dumps(times[1:]))
    dist.destroy_process_group()


def bench_bubble() -> None:
    print("| schedule | p | v | m | step (s) | busy (s) | bubble measured | bubble theory |\n"
          "|---|---|---|---|---|---|---|---|")
    for pp in (2, 4):
        for m in (pp, 2 * pp, 4 * pp):
            for schedule, vpp in (("gpipe", 1), ("1f1b", 1), ("interleaved_1f1b", 2)):
                with tempfile.NamedTemporaryFile(suffix=".json") as f:
                    torchrun(pp, "bubble-worker", f.name, schedule, str(vpp), str(m))
                    step = min(json.loads(Path(f.name).read_text()))
                busy = m * 3 * SLEEP_F  # forward t + backward 2t per micro-batch on every rank
                theory = (pp - 1) / (vpp * m + pp - 1)
                print(f"| {schedule} | {pp} | {vpp} | {m} | {step:.3f} | {busy:.3f} | "
                      f"{1 - busy / step:.3f} | {theory:.3f} |", flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "layout-worker":
        return layout_worker(sys.argv[2], sys.argv[4:], int(sys.argv[3]))
    if len(sys.argv) > 1 and sys.argv[1] == "bubble-worker":
        return bubble_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["layouts", "bubble"])
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    if args.part == "layouts":
        bench_layouts(args.steps)
    else:
        bench_bubble()


if __name__ == "__main__":
    main()
