"""Session fixtures for the evaluation tests: one small morpheme-aware tokenizer, one tiny model
saved as a training checkpoint (every test reads them; none may modify them)."""
from __future__ import annotations

import pytest

from eval_helpers import make_checkpoint, make_tokenizer


def pytest_collection_modifyitems(config, items):
    """Pipeline-parallel evaluation runs only when asked for: `make test-slow` (-m slow)."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="pipeline-parallel evaluation; run with -m slow (make test-slow)")
    for item in items:
        if "slow" in item.keywords and "tests/eval" in str(item.path):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tok_dir(tmp_path_factory) -> str:
    return make_tokenizer(tmp_path_factory.mktemp("eval_tok"))


@pytest.fixture(scope="session")
def tok(tok_dir):
    from hyperclova.tokenizer import load_tokenizer

    return load_tokenizer(tok_dir)


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory, tok_dir) -> str:
    """A DCP checkpoint dir (with `latest`) of a tiny random model whose config names tok_dir."""
    return make_checkpoint(tmp_path_factory.mktemp("eval_ckpt"), tok_dir)


@pytest.fixture(scope="session")
def model(ckpt):
    from hyperclova.generate import load_model

    return load_model(ckpt)[0]
