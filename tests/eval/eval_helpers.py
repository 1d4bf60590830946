"""Builders shared by the evaluation tests (a uniquely named module, see tests/convert)."""
from __future__ import annotations

from pathlib import Path

import tiny_tokenizer

FIXTURES = Path(__file__).parent / "fixtures"
MODEL = ["model=tiny", "model.n_layers=2", "model.d_model=64", "model.n_heads=4",
         "model.seq_len=512", "model.vocab_size=640", "train.seed=3"]


def make_tokenizer(root: Path) -> str:
    return tiny_tokenizer.make_tokenizer(root, n_docs=400, seed=11, verify_docs=50)


def make_checkpoint(root: Path, tok_dir: str, overrides: list[str] = ()) -> str:
    from hyperclova.config import load_config
    from hyperclova.model.gpt import build_model
    from hyperclova.train.checkpoint import CheckpointManager
    from hyperclova.train.engine import ModelState

    cfg = load_config(None, [*MODEL, *overrides, f"data.tokenizer={tok_dir}",
                             f"checkpoint.dir={root / 'ckpt'}"])
    model = build_model(cfg.model, seed=cfg.train.seed)
    CheckpointManager(cfg, {"model": ModelState([model])}, log=lambda s: None).save(1)
    return str(root / "ckpt")
