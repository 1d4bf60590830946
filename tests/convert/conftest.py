"""Fixtures for the conversion tests; the builders live in convert_helpers.py (a unique module
name, so tests/convert and tests/data can be collected in one pytest run)."""
from __future__ import annotations

import pytest

from convert_helpers import TINY, make_config, random_model, save_training_checkpoint


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """(config, model, checkpoint dir) for the tiny preset; shared, so tests must not modify it."""
    root = tmp_path_factory.mktemp("tiny")
    cfg = make_config(TINY, root / "ckpt")
    model = random_model(cfg)
    save_training_checkpoint(cfg, model)
    return cfg, model, root / "ckpt"
