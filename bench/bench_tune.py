"""Peak memory and step time of P-tuning, LoRA and full fine-tuning of the same model, side by side.

    python bench/bench_tune.py --preset 137m --threads 2 --rounds 2 --steps 3

Each method runs in a fresh process (so peaks do not mix), the methods alternating round after
round: the engine builds the model with the method's transforms (hyperclova/tune/adapters.py),
AdamW over the trainable parameters (hyperclova/train/optim.py), then training steps through
`engine.forward_backward` on `--batch` sequences of `--seq` tokens (loss on the second half, as
tuning has it). Reported per method:

- peak tensor bytes: the most bytes of tensor storage alive at once from building the model to
  the end of the second step (weights, gradients, optimizer state, activations), counted by a
  dispatch mode (hyperclova.parallel.accounting.PeakLiveBytes): what the method needs, free of
  allocator caching;
- peak RSS growth: the process's maximum resident set minus its size after the imports;
- median step time of the steps after the first two (forward, backward, optimizer step).

`--methods` picks among full, lora, ptuning and lora-bf16 (the frozen base held in bf16 under
bf16 autocast, `tune.base_dtype=auto` with `train.dtype=bf16`).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = {
    "full": ["tune.method=full"],
    "lora": ["tune.method=lora", "tune.lora.rank=8", "tune.lora.targets=[qkv,proj]"],
    "ptuning": ["tune.method=ptuning", "tune.ptuning.template=[3,3]"],
    "lora-bf16": ["tune.method=lora", "tune.lora.rank=8", "tune.lora.targets=[qkv,proj]",
                  "train.dtype=bf16"],
}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(method: str, preset: str, batch: int, seq: int, steps: int, threads: int) -> dict:
    import torch

    from hyperclova.config import load_config
    from hyperclova.parallel.accounting import PeakLiveBytes
    from hyperclova.train.engine import build_engine
    from hyperclova.train.optim import Optimizers
    from hyperclova.tune.adapters import count_trainable, model_transforms

    torch.set_num_threads(threads)
    base_rss = rss_bytes()
    cfg = load_config(None, [f"model={preset}", "model.dropout=0.0", "train.device=cpu",
                             f"train.micro_batch_size={batch}", f"train.global_batch_size={batch}",
                             "train.loss_chunk_tokens=1024", *METHODS[method]])
    device = torch.device("cpu")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg.model.vocab_size, (batch, seq + 1), generator=g)
    tokens, labels = ids[:, :-1], ids[:, 1:].clone()
    labels[:, : seq // 2] = -100
    if method == "ptuning":
        tokens = tokens.clone()
        tokens[:, :3] = cfg.model.vocab_size + torch.arange(3)
        tokens[:, seq // 2 - 3:seq // 2] = cfg.model.vocab_size + 3 + torch.arange(3)
    times = []
    with PeakLiveBytes() as peak:
        engine = build_engine(cfg, device, model_transforms(cfg, device))
        opt = Optimizers(engine.model_parts, cfg, "cpu")
        for _ in range(2):
            engine.forward_backward(tokens, labels, 1)
            opt.step()
            opt.zero_grad()
    for _ in range(steps):
        t0 = time.perf_counter()
        engine.forward_backward(tokens, labels, 1)
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    trainable, total = count_trainable(engine.model_parts[0])
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"method": method, "peak_tensor_bytes": peak.peak, "rss_growth": max_rss - base_rss,
            "step_s": times, "trainable": trainable, "params": total}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="137m")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=3, help="timed steps per run (after 2 untimed)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--methods", default="full,lora,ptuning,lora-bf16")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.preset, args.batch, args.seq, args.steps,
                                args.threads)))
        return
    methods = args.methods.split(",")
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO)}
    for _ in range(args.rounds):
        for m in methods:
            cmd = [sys.executable, __file__, "--worker", m, "--preset", args.preset,
                   "--batch", str(args.batch), "--seq", str(args.seq), "--steps", str(args.steps),
                   "--threads", str(args.threads)]
            out = subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True, text=True)
            runs[m].append(json.loads(out.stdout.strip().splitlines()[-1]))
    full = runs.get("full")
    ref_peak = max(r["peak_tensor_bytes"] for r in full) if full else None
    ref_step = statistics.median(t for r in full for t in r["step_s"]) if full else None
    print(f"{args.preset}, batch {args.batch} x {args.seq} tokens, {args.threads} threads, "
          f"{args.rounds} rounds x {args.steps} timed steps\n")
    print("| method | trainable parameters | peak tensor memory (MiB) | vs full | peak RSS growth "
          "(MiB) | median step (s) | vs full |\n|---|---|---|---|---|---|---|")
    for m in methods:
        rs = runs[m]
        peak = max(r["peak_tensor_bytes"] for r in rs)
        rss = max(r["rss_growth"] for r in rs)
        step = statistics.median(t for r in rs for t in r["step_s"])
        rel_p = f"{peak / ref_peak:.0%}" if ref_peak else "-"
        rel_s = f"{step / ref_step:.2f}x" if ref_step else "-"
        print(f"| {m} | {rs[0]['trainable']:,} of {rs[0]['params']:,} | {peak / 2**20:,.0f} | "
              f"{rel_p} | {rss / 2**20:,.0f} | {step:.2f} | {rel_s} |", flush=True)


if __name__ == "__main__":
    main()
