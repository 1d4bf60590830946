"""Run under torchrun with 2 processes: with parallel.debug=true, a collective whose shapes differ
between ranks on the engine's own process groups must be reported as a mismatch, not hang or
silently corrupt."""
import os
import sys

import torch
import torch.distributed as dist

from dist_harness import BASE
from hyperclova.config import load_config
from hyperclova.parallel.layout import prepare_distributed
from hyperclova.train.engine import build_engine

cfg = load_config(None, BASE + ["parallel.tp=2", f"parallel.debug={sys.argv[1]}"])
prepare_distributed(cfg, int(os.environ["WORLD_SIZE"]))  # what the trainer calls before init
dist.init_process_group("gloo")
engine = build_engine(cfg, torch.device("cpu"))
group = engine.mesh["tp"].get_group()
dist.all_reduce(torch.ones(2 + dist.get_rank()), group=group)  # shapes (2,) vs (3,)
print("no mismatch detected", flush=True)
