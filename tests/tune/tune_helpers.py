"""Builders shared by the tuning tests (a uniquely named module, see tests/convert): a small
tokenizer, tiny random base checkpoints, NSMC-format files and in-process tuning runs."""
from __future__ import annotations

import random
from pathlib import Path

import tiny_tokenizer

BASE_MODEL = ["model.n_layers=2", "model.d_model=64", "model.n_heads=4", "model.seq_len=128",
              "model.vocab_size=640", "model.dropout=0.0"]
RUN = ["train.device=cpu", "train.steps=6", "train.global_batch_size=8", "train.micro_batch_size=4",
       "train.lr=1e-2", "schedule.warmup_steps=0", "optim.weight_decay=0.0", "train.eval_interval=0",
       "logging.progress_bar=false", "logging.tensorboard=false", "logging.log_interval=1",
       "checkpoint.interval=0"]


def make_tokenizer(root: Path) -> str:
    return tiny_tokenizer.make_tokenizer(root, n_docs=300, seed=5, verify_docs=20)


def make_base(root: Path, tok_dir: str, seed: int) -> Path:
    """A complete DCP checkpoint (step 1) of a random tiny model whose config names tok_dir."""
    from hyperclova.config import load_config
    from hyperclova.model.gpt import build_model
    from hyperclova.train.checkpoint import CheckpointManager
    from hyperclova.train.engine import ModelState

    cfg = load_config(None, [*BASE_MODEL, f"train.seed={seed}", f"data.tokenizer={tok_dir}",
                             f"checkpoint.dir={root}"])
    model = build_model(cfg.model, seed=seed)
    return CheckpointManager(cfg, {"model": ModelState([model])}, log=lambda s: None).save(1)


def write_nsmc(path: Path, n: int, seed: int) -> Path:
    """An NSMC-format file whose label shows in the words (something a tuned model can learn)."""
    rng = random.Random(seed)
    good, bad = ["최고", "감동", "추천", "재밌다"], ["최악", "지루", "실망", "별로"]
    rows = ["id\tdocument\tlabel"]
    for i in range(n):
        label = rng.randint(0, 1)
        words = rng.sample(good if label else bad, 2)
        rows.append(f"{i}\t이 영화 정말 {words[0]} {words[1]}\t{label}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def tune_overrides(run_dir: Path, train_file: Path, *extra: str) -> list[str]:
    return [*RUN, "tune.task=nsmc", f"tune.train_file={train_file}", f"logging.run_dir={run_dir}",
            *extra]


def run_tuner(base: Path, overrides: list[str]):
    """A tuning run in this process; returns (Tuner, run result). The tuner's engine stays."""
    import torch.distributed as dist

    from hyperclova.tune.trainer import Tuner, tune_config

    tuner = Tuner(tune_config(None, str(base), overrides))
    try:
        out = tuner.run()
    finally:
        tuner.close()  # the checkpoint directory's lock; the engine stays usable
        if dist.is_initialized():
            dist.destroy_process_group()
    return tuner, out
