"""Run under torchrun: for each named layout, build the parallel engine, train a few steps and
write what the single-process reference is compared with to OUT/<case>.rank<r>.pt.

    torchrun --nproc_per_node 2 tests/distributed/equivalence_worker.py OUT name:key=v,key=v ...
"""
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from dist_harness import BASE, GLOBAL_BATCH, inference, train_steps
from hyperclova.config import load_config
from hyperclova.train.engine import build_engine


def main() -> None:
    out = Path(sys.argv[1])
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    for spec in sys.argv[2:]:
        name, overrides = spec.split(":", 1)
        cfg = load_config(None, BASE + overrides.split(","))
        torch.manual_seed(cfg.train.seed)
        engine = build_engine(cfg, torch.device("cpu"))
        n_micro = GLOBAL_BATCH // (cfg.train.micro_batch_size * engine.dp_size)
        record = train_steps(engine, n_micro)
        record.update(inference(engine, os.environ.get("EQUIVALENCE_CHECKPOINT")))
        record["stages"], record["dp_rank"] = engine.stage_ids, engine.dp_rank
        torch.save(record, out / f"{name}.rank{rank}.pt")
        dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
