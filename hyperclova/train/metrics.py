"""Per-step metrics: model FLOPs and MFU, the console / JSONL / TensorBoard sinks, and rank-0
console logging for everything a job prints."""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from hyperclova.config import Config, ModelConfig


def flops_per_token(cfg: ModelConfig, n_params: int) -> float:
    """Training FLOPs per token: 6 per weight (forward + backward matmuls, the tied output layer
    included via the embedding) plus attention scores and values, 12 * layers * d_model * seq_len
    (PaLM, appendix B). Position embeddings are a lookup, not a matmul."""
    matmul_params = n_params - cfg.seq_len * cfg.d_model
    return 6 * matmul_params + 12 * cfg.n_layers * cfg.d_model * cfg.seq_len


def peak_flops(cfg: Config, device: torch.device) -> float | None:
    if cfg.logging.peak_flops:
        return cfg.logging.peak_flops
    if device.type == "cuda":
        from hyperclova.plan.hardware import peak_bf16

        return peak_bf16(torch.cuda.get_device_name(device))
    return None


def is_rank0() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def print0(text: str) -> None:
    """Print on global rank 0 only: what every rank would say alike is said once."""
    if is_rank0():
        print(text, flush=True)


def print_ranks(text: str) -> None:
    """Collective (call it on every rank): each rank passes its own line, rank 0 prints each
    distinct line once with the ranks that sent it ("ranks 0-3,8: ..."). For facts that differ
    between ranks, such as per-stage memory, without one line per rank on a large job."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        print(text, flush=True)
        return
    lines: list = [None] * dist.get_world_size()
    dist.all_gather_object(lines, text)
    if dist.get_rank() != 0:
        return
    ranks: dict[str, list[int]] = {}
    for rank, line in enumerate(lines):
        ranks.setdefault(line, []).append(rank)
    for line, who in ranks.items():
        label = "rank" if len(who) == 1 else "ranks"
        print(f"{label} {_ranges(who)}: {line}", flush=True)


def _ranges(ranks: list[int]) -> str:
    """[0, 1, 2, 3, 8] -> '0-3,8'"""
    parts, start = [], ranks[0]
    for prev, cur in zip(ranks, ranks[1:] + [None]):
        if cur != prev + 1:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = cur
    return ",".join(parts)


class Metrics:
    """Writes step records on rank 0: console, metrics.jsonl and TensorBoard. The console gets a
    progress bar only when it is a terminal; in a log file (SLURM, a pipe) a bar's redraws would
    pile up, so there it gets one line per `logging.log_interval` steps and nothing else."""

    def __init__(self, cfg: Config, enabled: bool, total_steps: int, start_step: int):
        self.enabled = enabled
        self.interval = max(1, cfg.logging.log_interval)
        self.run_dir = Path(cfg.logging.run_dir)
        self.bar = self.tb = self.jsonl = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8")
        if cfg.logging.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))
        if cfg.logging.progress_bar and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                            file=sys.stderr)

    def log(self, step: int, record: dict, kind: str = "train") -> None:
        if not self.enabled:
            return
        row = {"kind": kind, "step": step, "time": time.time(), **record}
        self.jsonl.write(json.dumps(row) + "\n")
        self.jsonl.flush()
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.tb.add_scalar(f"{kind}/{key}", value, step)
        if kind == "train" and self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
        if kind != "train" or step % self.interval == 0:
            self.print(_format(kind, step, record))

    def print(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        for sink in (self.bar, self.tb, self.jsonl):
            if sink is not None:
                sink.close()


def _format(kind: str, step: int, record: dict) -> str:
    parts = [f"{kind} step {step}"]
    for key, value in record.items():
        if isinstance(value, float):
            parts.append(f"{key} {value:.4g}" if key != "lr" else f"lr {value:.3e}")
        else:
            parts.append(f"{key} {value}")
    return " | ".join(parts)
