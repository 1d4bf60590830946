"""The trainer's step on CPU through `hyperclova.train.engine.build_engine`, for two checkouts
side by side: forward/backward over a batch, gradient clipping, the optimizer step. Rounds
alternate between the checkouts, each round in a fresh process, so machine noise hits both.

    python bench/bench_engine.py --before 2a49e25 --rounds 5    # vs the engine before the one build path
    python bench/bench_engine.py --before /work/main              # or another checkout on disk

Both checkouts must have `build_engine(cfg, device)`, `Engine.forward_backward/clip_grad_norm`
and `hyperclova.train.optim.Optimizers`; each uses its own defaults (loss, optimizer).
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

HERE = Path(__file__).resolve().parents[1]
CASES = {  # name: (overrides, micro-batch)
    "tiny": (["model=tiny"], 8),
    "137m-width-2L": (["model.n_layers=2", "model.d_model=768", "model.n_heads=16",
                       "model.vocab_size=64000", "model.seq_len=512"], 4),
}


def child(case: str, steps: int, threads: int) -> None:
    import torch

    from hyperclova.config import load_config
    from hyperclova.train.engine import build_engine
    from hyperclova.train.optim import Optimizers

    torch.set_num_threads(threads)
    overrides, micro = CASES[case]
    cfg = load_config(None, overrides + ["train.device=cpu", f"train.micro_batch_size={micro}",
                                         f"train.global_batch_size={micro}"])
    engine = build_engine(cfg, torch.device("cpu"))
    opt = Optimizers(engine.model_parts, cfg, "cpu")
    g = torch.Generator().manual_seed(0)
    seq = torch.randint(0, cfg.model.vocab_size, (micro, cfg.model.seq_len + 1), generator=g)

    def step():
        engine.forward_backward(seq[:, :-1], seq[:, 1:], 1)
        engine.clip_grad_norm(1.0)
        opt.step()
        opt.zero_grad()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = (time.perf_counter() - t0) / steps
    print(json.dumps({"tokens_per_s": micro * cfg.model.seq_len / dt}))


def run(path: Path, case: str, steps: int, threads: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(path), "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, __file__, "--child", case, "--steps", str(steps),
                          "--threads", str(threads)], env=env, cwd=path, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["tokens_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", default="2a49e25",
                   help="a git revision of this repository, or a directory with another checkout")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cases", nargs="*", default=list(CASES))
    p.add_argument("--child")
    args = p.parse_args()
    if args.child:
        child(args.child, args.steps, args.threads)
        return
    other_tree = Path(args.before)
    if not (other_tree / "hyperclova").is_dir():
        from before_after import checkout

        other_tree = checkout(args.before, Path(tempfile.gettempdir()) / f"hyperclova-{args.before}")
    print(f"| case | this checkout tok/s | {args.before} tok/s | ratio |\n|---|---|---|---|")
    for case in args.cases:
        ours, other = [], []
        for _ in range(args.rounds):
            ours.append(run(HERE, case, args.steps, args.threads))
            other.append(run(other_tree, case, args.steps, args.threads))
        a, b = statistics.median(ours), statistics.median(other)
        print(f"| {case} | {a:,.0f} | {b:,.0f} | {a / b:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
