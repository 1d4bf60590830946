"""Shared pieces of the multi-process tests: launching torchrun, the tiny model, the batches and
the training procedure that every layout (and the single-process reference) runs identically."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from torch.distributed.tensor import DTensor

from hyperclova.parallel.build import plain_name

REPO = Path(__file__).resolve().parents[2]
VOCAB, SEQ, GLOBAL_BATCH, STEPS, LR, CLIP = 256, 32, 8, 6, 0.5, 1.0
BASE = [f"model.vocab_size={VOCAB}", f"model.seq_len={SEQ}", "model.n_layers=4",
        "model.d_model=64", "model.n_heads=4", "model.dropout=0.0", "train.device=cpu",
        f"train.global_batch_size={GLOBAL_BATCH}", "train.micro_batch_size=2", "train.seed=7",
        "train.dist_timeout_s=60"]


def launch(nproc: int, script: str, *args: str, timeout: float = 300,
           env: dict | None = None) -> subprocess.CompletedProcess:
    """torchrun `script` on `nproc` local CPU processes (gloo); returns the finished process."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "--monitor-interval=0.2", script, *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def trainer_overrides(shard: str, run_dir, *extra: str) -> list[str]:
    """A tiny full training run through `python -m hyperclova.train`."""
    return [*BASE, f"data.blend=[{shard}]", f"data.cache_dir={run_dir}/cache",
            "train.steps=8", "train.lr=3e-3", "train.eval_interval=0", "schedule.warmup_steps=2",
            "checkpoint.interval=4", f"logging.run_dir={run_dir}", f"checkpoint.dir={run_dir}/ckpt",
            "logging.progress_bar=false", "logging.tensorboard=false", "logging.log_interval=1",
            *extra]


def train_losses(run_dir) -> dict[int, float]:
    import json

    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["kind"] == "train"}


def batches(n: int = STEPS) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1234)
    out = []
    for _ in range(n):
        seq = torch.randint(0, VOCAB, (GLOBAL_BATCH, SEQ + 1), generator=g)
        out.append((seq[:, :-1], seq[:, 1:]))
    return out


def full_tensors(model_parts, grads: bool) -> dict[str, torch.Tensor]:
    """Every parameter (or gradient) of this rank's parts as a full tensor (a collective for
    DTensors: all ranks of a stage hold the same parameters, so they call it in the same order)."""
    out = {}
    for m in model_parts:
        for name, p in m.named_parameters():
            t = p.grad if grads else p
            t = t.full_tensor() if isinstance(t, DTensor) else t
            out[plain_name(name)] = t.detach().clone()
    return out


def train_steps(engine, n_micro: int) -> dict:
    """The procedure each layout runs: forward/backward over the global batch, gradient
    clipping, SGD (AdamW would amplify 1e-9 differences); then one evaluation."""
    dp_rank, dp_size = engine.dp_rank, engine.dp_size
    opts = [torch.optim.SGD(m.parameters(), lr=LR) for m in engine.model_parts]
    record = {"losses": [], "norms": [], "init": full_tensors(engine.model_parts, grads=False)}
    data = batches()
    per_rank = GLOBAL_BATCH // dp_size
    for step, (tokens, labels) in enumerate(data):
        mine = slice(dp_rank * per_rank, (dp_rank + 1) * per_rank)
        loss = engine.forward_backward(tokens[mine], labels[mine], n_micro)
        if step == 0:
            record["grads"] = full_tensors(engine.model_parts, grads=True)
        record["norms"].append(engine.clip_grad_norm(CLIP).item())
        record["losses"].append(loss.item())
        for opt in opts:
            opt.step()
            opt.zero_grad(set_to_none=True)
    tokens, labels = data[0]
    record["eval"] = engine.eval_loss(tokens[:2], labels[:2]).item()
    return record


def sequence_scores(labels: torch.Tensor):
    """A `reduce` for forward_eval: per sequence, the summed log-probability of `labels` and
    the last position's argmax (what few-shot evaluation asks of the logits)."""
    def reduce(logits: torch.Tensor) -> torch.Tensor:
        assert logits.dtype == torch.float32 and logits.shape[-1] == VOCAB
        logp = logits.log_softmax(-1).gather(-1, labels[..., None]).squeeze(-1)
        return torch.stack([logp.sum(-1), logits[:, -1].argmax(-1).float()], dim=-1)
    return reduce


def eval_batches(dp_rank: int, rows: int = 2):
    """This data-parallel rank's sequences for forward_eval at two lengths (full and half)."""
    tokens, labels = batches(1)[0]
    mine = slice(dp_rank * rows, (dp_rank + 1) * rows)
    return [(tokens[mine, :n], labels[mine, :n]) for n in (SEQ, SEQ // 2)]


def inference(engine, checkpoint: str | None = None, rows: int = 2) -> dict:
    """forward_eval at two sequence lengths; then, given a checkpoint, load_weights and again."""
    out = {"forward_eval": [engine.forward_eval(t, sequence_scores(l))
                            for t, l in eval_batches(engine.dp_rank, rows)]}
    if checkpoint:
        out["missing"] = engine.load_weights(checkpoint)
        out["loaded_eval"] = [engine.forward_eval(t, sequence_scores(l))
                              for t, l in eval_batches(engine.dp_rank, rows)]
    return out
