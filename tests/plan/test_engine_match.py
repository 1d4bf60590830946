"""The dry run's shards are the parallel engine's: build the real engine for single ranks of a
layout under torch's fake process group (no communication) and compare the bytes it reports."""
import pytest
import torch
import torch.distributed as dist

from hyperclova.config import load_config
from hyperclova.plan.dryrun import dry_run

import hyperclova.parallel.accounting as accounting  # noqa: E402  (part of this package: must import)
import hyperclova.parallel.engine as engine  # noqa: E402
fake_pg = pytest.importorskip("torch.testing._internal.distributed.fake_pg")

LAYOUTS = [
    ["parallel.tp=2", "parallel.pp=2", "parallel.vpp=2", "parallel.dp_shard=3",
     "parallel.dp_replicate=2", "parallel.schedule=interleaved_1f1b"],
    ["parallel.tp=4", "parallel.pp=2", "parallel.sequence_parallel=true"],
]


def engine_bytes(cfg, rank: int, world: int) -> dict:
    dist.init_process_group("fake", store=fake_pg.FakeStore(), rank=rank, world_size=world)
    try:
        eng = engine.build_parallel_engine(cfg, torch.device("cpu"))
        return accounting.memory_bytes(eng.model_parts)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(dist.is_available() and dist.is_initialized(),
                    reason="a process group is already running in this interpreter")
@pytest.mark.parametrize("overrides", LAYOUTS, ids=["pp-vpp-hsdp-tp", "pp-tp-sp"])
def test_dry_run_equals_engine(overrides):
    cfg = load_config(None, ["model=tiny", "train.global_batch_size=48",
                             "train.micro_batch_size=1", *overrides])
    p = cfg.parallel
    world = p.tp * p.pp * p.dp_replicate * p.dp_shard
    for rank in (0, world - 1):  # first stage / first shard, last stage / last shard
        got = engine_bytes(cfg, rank, world)
        (rep,) = dry_run(cfg, ranks=[rank])
        assert (rep.param_bytes, rep.grad_bytes, rep.optim_bytes) == \
            (got["params"], got["grads"], got["optim"]), rank
