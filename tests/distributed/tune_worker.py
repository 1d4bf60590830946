"""Run under torchrun: for each named layout, build the engine with a tuning method's adapters,
take a few SGD steps on the trainable parameters and write what the single-process reference is
compared with to OUT/<case>.rank<r>.pt (tests/distributed/test_tune_layouts.py).

    torchrun --nproc_per_node 2 tests/distributed/tune_worker.py OUT name:key=v;key=v ...
"""
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from dist_harness import BASE
from tune_harness import tune_steps
from hyperclova.config import load_config
from hyperclova.train.engine import build_engine
from hyperclova.tune.adapters import model_transforms


def main() -> None:
    out = Path(sys.argv[1])
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    for spec in sys.argv[2:]:
        name, overrides = spec.split(":", 1)
        cfg = load_config(None, BASE + overrides.split(";"))
        device = torch.device("cpu")
        engine = build_engine(cfg, device, model_transforms(cfg, device))
        record = tune_steps(engine, cfg)
        record["dp_rank"] = engine.dp_rank
        torch.save(record, out / f"{name}.rank{rank}.pt")
        dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
