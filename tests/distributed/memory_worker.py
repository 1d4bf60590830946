"""Run under torchrun with 2 processes: the peak resident memory each process adds while building
a ~290 MB (fp32) model, first as one process alone (no process group), then as a rank of
dp_shard=2 (FSDP2) and of tp=2. Writes OUT/memory.rank<r>.json.

    torchrun --nproc_per_node 2 tests/distributed/memory_worker.py OUT

Linux only: /proc/self/clear_refs resets the peak (VmHWM) before each build.
"""
import gc
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from hyperclova.config import load_config
from hyperclova.parallel.accounting import memory_bytes
from hyperclova.train.engine import build_engine

MODEL = ["model.n_layers=5", "model.d_model=1024", "model.n_heads=16", "model.vocab_size=8192",
         "model.seq_len=256", "train.device=cpu", "train.global_batch_size=8",
         "train.micro_batch_size=4"]


def status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def build_peak(overrides: list[str]) -> dict:
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = status("VmRSS")
    engine = build_engine(load_config(None, MODEL + overrides))
    out = {"peak": status("VmHWM") - before, "params": memory_bytes(engine.model_parts)["params"]}
    del engine
    return out


def main() -> None:
    out = Path(sys.argv[1])
    record = {"single": build_peak([])}  # before any process group: one process alone
    dist.init_process_group("gloo")
    record["dp_shard2"] = build_peak(["parallel.dp_shard=2"])
    record["tp2"] = build_peak(["parallel.tp=2"])
    (out / f"memory.rank{dist.get_rank()}.json").write_text(json.dumps(record))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
