"""make_loader: Megatron pretraining-sampler order over dp ranks, exact resume."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from hyperclova.config import DataConfig
from hyperclova.data import build_datasets, make_loader
from hyperclova.data.loader import PretrainingSampler
from data_helpers import random_docs


class Numbered(Dataset):
    """Sample i is a row of i's, so a batch shows which samples it holds."""

    def __init__(self, n: int, seq: int = 4):
        self.n, self.seq = n, seq

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"tokens": torch.full((self.seq,), i), "labels": torch.full((self.seq,), i + 1)}


def sample_ids(batches):
    return [b["tokens"][:, 0].tolist() for b in batches]


def test_ranks_split_each_global_batch():
    ds = Numbered(23)
    per_rank = [sample_ids(make_loader(ds, 2, 0, r, 3)) for r in range(3)]
    assert per_rank[0] == [[0, 1], [6, 7], [12, 13]]  # 23 // 6 = 3 full global batches, rest dropped
    assert per_rank[2] == [[4, 5], [10, 11], [16, 17]]
    everything = sorted(i for rank in per_rank for batch in rank for i in batch)
    assert everything == list(range(18))


@pytest.mark.parametrize("dp_size,rank", [(1, 0), (2, 1)])
def test_resume_continues_exactly(dp_size, rank):
    ds = Numbered(50)
    full = sample_ids(make_loader(ds, 3, 0, rank, dp_size))
    steps_done = 4
    resumed = sample_ids(make_loader(ds, 3, steps_done * 3 * dp_size, rank, dp_size))
    assert resumed == full[steps_done:]


def test_making_and_reading_a_loader_leaves_the_global_rng_alone():
    """The global stream drives dropout and is restored from checkpoints: the loader must not
    draw from it (it has a generator of its own)."""
    torch.manual_seed(7)
    before = torch.get_rng_state()
    assert sample_ids(make_loader(Numbered(12), 2, 0, 0, 1, seed=3))[0] == [0, 1]
    assert torch.equal(torch.get_rng_state(), before)


def test_resume_with_real_datasets_and_workers(process_group, shard_factory, tmp_path):
    prefix = shard_factory("news", random_docs(200, 1, 500, seed=1))
    cfg = DataConfig(blend=[prefix], split="100,0,0", cache_dir=str(tmp_path / "c"))
    train, _ = build_datasets(cfg, 8, seed=5, train_samples=40, valid_samples=0)
    full = list(make_loader(train, 4, 0, 0, 1))
    tail = list(make_loader(train, 4, 16, 0, 1, num_workers=1))
    assert len(tail) == len(full) - 4
    for a, b in zip(full[4:], tail):
        assert a["tokens"].shape == (4, 8) and torch.equal(a["tokens"], b["tokens"])
        assert torch.equal(a["labels"], b["labels"])


def test_bad_layouts():
    with pytest.raises(ValueError, match="consumed_samples=11"):
        PretrainingSampler(10, 11, 1, 0, 1)
    with pytest.raises(ValueError, match="dp_rank=2"):
        PretrainingSampler(10, 0, 1, 2, 2)
    assert list(PretrainingSampler(10, 10, 1, 0, 1)) == []
