"""What checkpoint digests and asynchronous saving cost, on a 350M-sized training state on CPU.

    OMP_NUM_THREADS=1 python bench/bench_checkpoint.py --preset 350m --rounds 3 --workdir /tmp/bench_ckpt

The state is what the trainer saves: fp32 model, AdamW moments (after one real optimizer step),
loop position and RNG, in a 1-process gloo group. Alternating rounds, side by side:
  plain DCP      `dcp.save` with DCP's own FileSystemWriter (no digests: the cost before them);
  sync save      CheckpointManager.save: the same write, plus every file hashed (xxh3-128) and
                 the COMPLETE marker, rename and `latest`; the time spent hashing is also timed
                 inside the save, which is steadier than a difference of two disk-bound saves;
  async save     CheckpointManager.save with checkpoint.async_save: the time training is blocked
                 (copy of the state to host memory) and the time until the checkpoint is complete.
Then, on the written files (in the page cache): a full verification as a resume does it, and the
raw speed of candidate digests. Data files are fsync'ed by DCP, so the writes reach the disk.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.distributed.checkpoint as dcp  # noqa: E402
import xxhash  # noqa: E402

from hyperclova.config import load_config  # noqa: E402
from hyperclova.model.gpt import build_model  # noqa: E402
from hyperclova.train import checkpoint  # noqa: E402
from hyperclova.train.checkpoint import (  # noqa: E402
    CheckpointManager,
    RngState,
    TrainState,
    check_complete,
)
from hyperclova.train.engine import ModelState  # noqa: E402
from hyperclova.train.optim import Optimizers  # noqa: E402


def training_state(cfg):
    model = build_model(cfg.model, seed=0)
    opt = Optimizers([model], cfg, "cpu")
    for p in model.parameters():
        p.grad = torch.full_like(p, 1e-3)
    opt.set_lr(0.0)  # moments filled, weights unchanged
    opt.step()
    opt.zero_grad()
    n = sum(p.numel() for p in model.parameters())
    return {"model": ModelState([model]), "optim": opt, "train": TrainState(),
            "rng": RngState(0)}, n


def _digest_speed(files: list[Path]) -> dict[str, float]:
    """GiB/s of each digest over the checkpoint's files (read from the page cache)."""
    def crc32(path):
        c = 0
        with open(path, "rb") as f:
            while chunk := f.read(8 << 20):
                c = zlib.crc32(chunk, c)

    def hashlib_of(name):
        def run(path):
            h = hashlib.new(name)
            with open(path, "rb") as f:
                while chunk := f.read(8 << 20):
                    h.update(chunk)
        return run

    def xxh3(path):
        h = xxhash.xxh3_128()
        with open(path, "rb") as f:
            while chunk := f.read(8 << 20):
                h.update(chunk)

    total = sum(p.stat().st_size for p in files)
    out = {}
    for name, fn in [("xxh3_128", xxh3), ("zlib.crc32", crc32), ("sha256", hashlib_of("sha256")),
                     ("blake2b", hashlib_of("blake2b"))]:
        t0 = time.perf_counter()
        for p in files:
            fn(p)
        out[name] = total / (time.perf_counter() - t0) / 2**30
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="350m")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", default="/tmp/bench_ckpt")
    args = ap.parse_args()
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    store = tempfile.mktemp(dir=work)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    try:
        run(args, work)
    finally:
        dist.destroy_process_group()
        shutil.rmtree(work, ignore_errors=True)


def _timed_digests(spent: list[float]):
    """Wrap checkpoint.file_digest so that the seconds it takes are added to spent[0]."""
    original = checkpoint.file_digest

    def timed(path):
        t0 = time.perf_counter()
        try:
            return original(path)
        finally:
            spent[0] += time.perf_counter() - t0

    checkpoint.file_digest = timed


def run(args, work: Path) -> None:
    sync_cfg = load_config(None, [f"model={args.preset}", f"checkpoint.dir={work / 'sync'}",
                                  "checkpoint.keep_last=1"])
    async_cfg = load_config(None, [f"model={args.preset}", f"checkpoint.dir={work / 'async'}",
                                   "checkpoint.keep_last=1", "checkpoint.async_save=true"])
    states, n_params = training_state(sync_cfg)
    sync_mgr = CheckpointManager(sync_cfg, states, log=lambda s: None)
    async_mgr = CheckpointManager(async_cfg, states, log=lambda s: None)
    times: dict[str, list[float]] = {"plain DCP": [], "sync save": [], "of which digests": [],
                                     "async blocked": [], "async total": []}
    spent = [0.0]
    _timed_digests(spent)
    for r in range(1, args.rounds + 1):
        plain = work / "plain"
        shutil.rmtree(plain, ignore_errors=True)
        t0 = time.perf_counter()
        dcp.save(states, storage_writer=dcp.FileSystemWriter(str(plain)))
        times["plain DCP"].append(time.perf_counter() - t0)

        spent[0] = 0.0
        t0 = time.perf_counter()
        sync_mgr.save(r)
        times["sync save"].append(time.perf_counter() - t0)
        times["of which digests"].append(spent[0])

        t0 = time.perf_counter()
        async_mgr.save(r)
        times["async blocked"].append(time.perf_counter() - t0)
        async_mgr.wait()
        times["async total"].append(time.perf_counter() - t0)
        print(f"round {r}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)

    step = sync_cfg.checkpoint_dir / f"step_{args.rounds:08d}"
    size = sum(p.stat().st_size for p in step.iterdir())
    t0 = time.perf_counter()
    assert check_complete(step) is None
    verify = time.perf_counter() - t0
    speeds = _digest_speed(sorted(p for p in step.iterdir() if p.suffix == ".distcp"))

    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\npreset {args.preset}: {n_params:,} parameters; checkpoint {size / 2**30:.2f} GiB "
          f"(model + AdamW moments); median of {args.rounds} alternating rounds")
    print("| save | seconds (median) | vs plain DCP |")
    print("|---|---|---|")
    for k in times:
        print(f"| {k} | {med[k]:.2f} | {med[k] / med['plain DCP']:.2f}x |")
    share = statistics.median(d / s for d, s in zip(times["of which digests"], times["sync save"]))
    print(f"\ndigests: {share:.1%} of a synchronous save (median of per-round shares)")
    print(f"\nfull verification (resume, one process): {verify:.2f} s = {size / verify / 2**30:.2f} GiB/s")
    print("| digest | GiB/s (page cache, one thread) |")
    print("|---|---|")
    for k, v in speeds.items():
        print(f"| {k} | {v:.2f} |")


if __name__ == "__main__":
    main()
