"""Two real gloo ranks: rank 0 builds megatron-core's index caches, rank 1 loads them, and the
data-parallel loaders together yield exactly what one rank with the whole global batch would."""
from __future__ import annotations

import os

import torch
import torch.multiprocessing as mp

from hyperclova.config import DataConfig
from hyperclova.data import build_datasets, make_loader
from data_helpers import random_docs

MICRO, STEPS = 2, 5


def _rank_main(rank: int, world: int, store: str, cfg: DataConfig, out: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        train, _ = build_datasets(cfg, 8, seed=3, train_samples=40, valid_samples=0)
        loader = make_loader(train, MICRO, consumed_samples=0, dp_rank=rank, dp_size=world)
        torch.save([next(loader)["tokens"] for _ in range(STEPS)], f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_data_parallel_ranks(process_group, shard_factory, tmp_path):
    news = shard_factory("news", random_docs(120, 1, 500, seed=1))
    blog = shard_factory("blog", random_docs(120, 500, 999, seed=2))
    cfg = DataConfig(blend=[0.4, news, 0.6, blog], split="100,0,0", cache_dir=str(tmp_path / "cache"))
    mp.start_processes(_rank_main, args=(2, str(tmp_path / "store"), cfg, str(tmp_path)), nprocs=2,
                       start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    # The same build in this process (world size 1), loaded from the cache the ranks wrote.
    train, _ = build_datasets(cfg, 8, seed=3, train_samples=40, valid_samples=0)
    whole = make_loader(train, MICRO * 2, consumed_samples=0, dp_rank=0, dp_size=1)
    for step in range(STEPS):
        expected = next(whole)["tokens"]
        assert torch.equal(torch.cat([ranks[0][step], ranks[1][step]]), expected)
