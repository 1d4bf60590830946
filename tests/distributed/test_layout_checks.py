"""Layouts that cannot work are rejected before any process group exists, naming what to change."""
import pytest

from hyperclova.config import ConfigError, load_config
from hyperclova.parallel.layout import Layout, check_layout

BASE = ["model.n_layers=4", "model.d_model=64", "model.n_heads=4", "model.vocab_size=256",
        "model.seq_len=32", "train.global_batch_size=8", "train.micro_batch_size=2"]


def check(*overrides, world=None):
    return check_layout(load_config(None, BASE + list(overrides)), world)


@pytest.mark.parametrize("overrides,world,needle", [
    (["parallel.tp=2"], 4, "--nproc_per_node 2"),
    (["parallel.tp=3"], 3, "model.n_heads=4 is not divisible by parallel.tp=3"),
    (["model.vocab_size=255", "parallel.tp=2"], 2,
     "model.vocab_size=255 is not divisible by parallel.tp=2"),
    (["parallel.tp=2", "parallel.sequence_parallel=true", "model.seq_len=31"], 2,
     "model.seq_len=31 divisible"),
    (["parallel.sequence_parallel=true"], 1, "sequence_parallel needs parallel.tp > 1"),
    (["parallel.pp=3"], 3, "model.n_layers=4 is not divisible by parallel.pp*vpp"),
    (["parallel.pp=2", "parallel.vpp=4", "parallel.schedule=interleaved_1f1b"], 2,
     "parallel.pp*vpp=2*4=8"),
    (["parallel.pp=2", "parallel.vpp=2", "parallel.schedule=1f1b"], 2, "interleaved schedule"),
    (["parallel.vpp=2", "parallel.schedule=interleaved_1f1b"], 1, "needs parallel.pp > 1"),
    (["parallel.pp=4", "train.global_batch_size=4"], 4, "set parallel.microbatches >= 4"),
    (["parallel.pp=2", "parallel.microbatches=3"], 2, "parallel.microbatches=3 does not divide"),
    (["parallel.dp_shard=3"], 3, "train.global_batch_size=8 is not divisible"),
    (["parallel.pp=2", "parallel.schedule=zb"], 2, "parallel.schedule='zb' is not one of"),
    (["parallel.tp=0"], 0, "parallel.tp must be at least 1"),
])
def test_bad_layout_is_rejected_with_a_fix(overrides, world, needle):
    with pytest.raises(ConfigError) as info:
        check(*overrides, world=world)
    assert needle in str(info.value)


def test_interleaved_needs_a_multiple_of_pp_microbatches():
    with pytest.raises(ConfigError, match="multiple of parallel.pp=2"):
        check("parallel.pp=2", "parallel.vpp=2", "parallel.schedule=interleaved_1f1b",
              "parallel.microbatches=3", "train.micro_batch_size=1", "train.global_batch_size=6",
              world=2)


def test_good_layouts_pass():
    lay = check("parallel.pp=2", "parallel.tp=2", "parallel.dp_shard=2", world=8)
    assert lay.degrees() == {"pp": 2, "dp_replicate": 1, "dp_shard": 2, "tp": 2}
    check("parallel.pp=2", "parallel.vpp=2", "parallel.schedule=interleaved_1f1b", world=2)
    check("parallel.tp=4", "parallel.sequence_parallel=true", world=4)
    assert check().world_size == 1
