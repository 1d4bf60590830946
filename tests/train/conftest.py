import numpy as np
import pytest
import torch

from hyperclova.config import load_config


def write_shard(prefix, n_docs=400, vocab=256, seed=0):
    """A Megatron shard of learnable documents: arithmetic token sequences with random starts."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    rng = np.random.default_rng(seed)
    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=np.uint16)
    for _ in range(n_docs):
        start, stride, length = rng.integers(1, vocab), rng.integers(1, 4), rng.integers(20, 80)
        doc = (start + stride * np.arange(length)) % (vocab - 1) + 1
        builder.add_document(torch.from_numpy(doc.astype(np.int64)), [length])
    builder.finalize(f"{prefix}.idx")
    return str(prefix)


@pytest.fixture(scope="session")
def shard(tmp_path_factory):
    return write_shard(tmp_path_factory.mktemp("shard") / "toy_text_document")


@pytest.fixture
def make_cfg(shard, tmp_path):
    def make(*overrides, run="run"):
        return load_config(None, [
            "model.n_layers=2", "model.d_model=64", "model.n_heads=4", "model.vocab_size=256",
            "model.seq_len=32", f"data.blend=[{shard}]", f"data.cache_dir={tmp_path / 'cache'}",
            "train.steps=8", "train.global_batch_size=8", "train.micro_batch_size=4",
            "train.lr=3e-3", "train.eval_interval=4", "train.eval_iters=2",
            "schedule.warmup_steps=2", "checkpoint.interval=4", f"logging.run_dir={tmp_path / run}",
            "logging.progress_bar=false", "logging.tensorboard=false", *overrides])
    return make
