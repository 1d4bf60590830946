import pytest

from hyperclova.config import load_config
from toy_shard import write_shard


@pytest.fixture(scope="session")
def shard(tmp_path_factory):
    return write_shard(tmp_path_factory.mktemp("shard") / "toy_text_document", n_docs=400)


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
