"""The dry run's shards are the engine's: build the real engine, materialised and initialised,
for single ranks of a layout under torch's fake process group (no communication) and compare
the bytes it holds with the dry run's meta-device measurement."""
import pytest
import torch
import torch.distributed as dist

from hyperclova.config import load_config
from hyperclova.parallel.accounting import memory_bytes
from hyperclova.plan.dryrun import dry_run, fake_process_group
from hyperclova.train.engine import build_engine

LAYOUTS = [
    ["parallel.tp=2", "parallel.pp=2", "parallel.vpp=2", "parallel.dp_shard=3",
     "parallel.dp_replicate=2", "parallel.schedule=interleaved_1f1b"],
    ["parallel.tp=4", "parallel.pp=2", "parallel.sequence_parallel=true"],
]


@pytest.mark.skipif(dist.is_available() and dist.is_initialized(),
                    reason="a process group is already running in this interpreter")
@pytest.mark.parametrize("overrides", LAYOUTS, ids=["pp-vpp-hsdp-tp", "pp-tp-sp"])
def test_dry_run_equals_engine(overrides):
    cfg = load_config(None, ["model=tiny", "train.global_batch_size=48",
                             "train.micro_batch_size=1", "train.device=cpu", *overrides])
    p = cfg.parallel
    world = p.tp * p.pp * p.dp_replicate * p.dp_shard
    for rank in (0, world - 1):  # first stage / first shard, last stage / last shard
        with fake_process_group(rank, world):
            engine = build_engine(cfg, torch.device("cpu"))
            assert all(not t.is_meta for m in engine.model_parts for t in m.parameters())
            got = memory_bytes(engine.model_parts)
        (rep,) = dry_run(cfg, ranks=[rank])
        assert (rep.param_bytes, rep.grad_bytes, rep.optim_bytes) == \
            (got["params"], got["grads"], got["optim"]), rank
