"""Shared builders: models with every tensor random (biases and LayerNorms too, so a wrongly mapped
bias cannot hide behind zeros) and checkpoints written by the trainer's own CheckpointManager."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
# trust_remote_code copies the tokenizer wrapper into this cache; keep it out of the user's home.
os.environ.setdefault("HF_MODULES_CACHE", str(Path(os.environ.get("TMPDIR", "/tmp")) / "hyperclova_hf_modules"))

import torch  # noqa: E402

from hyperclova.config import Config, load_config  # noqa: E402
from hyperclova.model.gpt import GPT, build_model  # noqa: E402

TINY = ["model=tiny"]
# 137M's width (d_model 768, 16 heads of 48), 2 layers, a small vocabulary to stay fast.
WIDE = ["model=137m", "model.n_layers=2", "model.vocab_size=2048", "model.seq_len=512"]


def make_config(overrides: list[str], ckpt_dir: Path | None = None) -> Config:
    extra = [f"checkpoint.dir={ckpt_dir}"] if ckpt_dir else []
    return load_config(None, overrides + extra)


def random_model(cfg: Config, seed: int = 0) -> GPT:
    model = build_model(cfg.model, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name:  # LayerNorm weight ~1, bias ~0, but not exactly
                p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return model.eval()


def save_training_checkpoint(cfg: Config, model: GPT, step: int = 3) -> Path:
    """A checkpoint exactly as the trainer writes it: model, optimizer (after one real step),
    loop position and RNG, through hyperclova.train.checkpoint.CheckpointManager."""
    from hyperclova.train.checkpoint import CheckpointManager, RngState, TrainState
    from hyperclova.train.engine import ModelState
    from hyperclova.train.optim import Optimizers

    opt = Optimizers([model], cfg, "cpu")
    tokens = torch.randint(0, cfg.model.vocab_size, (2, 16), generator=torch.Generator().manual_seed(5))
    logits = model(tokens)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
    opt.set_lr(0.0)  # populate AdamW state without changing the weights under test
    opt.step()
    opt.zero_grad()
    state = TrainState()
    state.step, state.consumed_samples = step, 2 * step
    mgr = CheckpointManager(cfg, {"model": ModelState([model]), "optim": opt, "train": state,
                                  "rng": RngState(0)}, log=lambda s: None)
    return mgr.save(step)

