"""Fixtures for the data tests: a gloo process group and small synthetic shards."""
from __future__ import annotations

import numpy as np
import pytest
import torch.distributed as dist

from data_helpers import write_shard


@pytest.fixture
def process_group(tmp_path_factory):
    """A gloo group of world size 1 (megatron-core's dataset builder needs one), gone afterwards
    so that other tests can start their own."""
    if dist.is_initialized():
        yield dist.group.WORLD
        return
    store = tmp_path_factory.mktemp("pg") / "store"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    yield dist.group.WORLD
    dist.destroy_process_group()


@pytest.fixture
def shard_factory(tmp_path):
    def make(name: str, docs: list[np.ndarray], dtype=np.uint16, vocab_size: int | None = None) -> str:
        return write_shard(str(tmp_path / f"{name}_text_document"), docs, dtype, vocab_size)

    return make


@pytest.fixture(scope="session")
def corpus_and_tokenizer(tmp_path_factory) -> tuple[str, str]:
    """A small synthetic Korean JSONL corpus and a morpheme-aware BBPE tokenizer trained on it."""
    from hyperclova.corpus.synthetic import generate_corpus
    from hyperclova.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("corpus")
    corpus = str(root / "corpus.jsonl")
    generate_corpus(corpus, n_docs=300, seed=0)
    train_tokenizer([corpus], str(root / "tok"), vocab_size=600, show_progress=False)
    return corpus, str(root / "tok")
