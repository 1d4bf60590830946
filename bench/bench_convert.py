"""Peak memory of checkpoint conversion (docs/convert.md): streaming vs loading everything at once.

    OMP_NUM_THREADS=1 python bench/bench_convert.py --preset 350m --workdir /tmp/bench_convert

Writes a model-only checkpoint of the preset (random weights) through the trainer's
CheckpointManager, then runs each conversion in a fresh process and reports its peak memory above
the cost of importing torch + hyperclova, sampled every 5 ms: peak resident set (VmRSS, which also
counts the file pages safetensors' mmap reader touches, reclaimable page cache) and peak anonymous
memory (RssAnon: what actually has to fit in RAM). The "load all" row is the non-streaming way for comparison:
DCP's `_load_state_dict_from_keys` of the whole model, then `safetensors.torch.save_file`.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _memory_kib() -> tuple[int, int]:
    """(resident, anonymous) KiB of this process."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "RssAnon:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out["VmRSS"], out["RssAnon"]


def child(task: str, src: str, dst: str) -> None:
    """Run one conversion in this process and print its memory figures as JSON."""
    peak = [0, 0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[:] = [max(a, b) for a, b in zip(peak, _memory_kib())]
            time.sleep(0.005)

    import torch  # noqa: F401 (imported before the baseline is taken)

    from hyperclova.convert import consolidate, from_hf, to_hf

    base = _memory_kib()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    if task == "to-hf":
        to_hf(src, dst)
    elif task == "from-hf":
        from_hf(src, dst)
    elif task == "consolidate":
        consolidate(src, dst)
    elif task == "load-all":
        from safetensors.torch import save_file
        from torch.distributed.checkpoint.state_dict_loader import _load_state_dict_from_keys

        from hyperclova.convert.dcp import resolve_step_dir

        sd = _load_state_dict_from_keys({"model"}, checkpoint_id=str(resolve_step_dir(src)))["model"]
        save_file({k: v.contiguous() for k, v in sd.items()}, dst)
    seconds = time.perf_counter() - t0
    stop.set()
    thread.join()
    print(json.dumps({"task": task, "seconds": seconds, "rss_above_import_mib": (peak[0] - base[0]) / 1024,
                      "anon_above_import_mib": (peak[1] - base[1]) / 1024}))


def make_checkpoint(preset: str, ckpt_dir: Path) -> dict:
    from hyperclova.config import load_config
    from hyperclova.model.gpt import build_model
    from hyperclova.train.checkpoint import CheckpointManager
    from hyperclova.train.engine import ModelState

    cfg = load_config(None, [f"model={preset}", f"checkpoint.dir={ckpt_dir}"])
    model = build_model(cfg.model, seed=0)
    CheckpointManager(cfg, {"model": ModelState([model])}, log=lambda s: None).save(1)
    sizes = {n: p.numel() * 4 for n, p in model.named_parameters()}
    layer = sum(v for k, v in sizes.items() if k.startswith("layers.0."))
    out = {"params": sum(p.numel() for p in model.parameters()), "largest_tensor_mib": max(sizes.values()) / 2**20,
           "one_layer_mib": layer / 2**20, "model_mib": sum(sizes.values()) / 2**20}
    return out


TASKS = {"from-hf": lambda w: (w / "hf", w / "ckpt2"),
         "consolidate": lambda w: (w / "ckpt", w / "model.safetensors"),
         "load-all": lambda w: (w / "ckpt", w / "all.safetensors")}


def run(task: str, src: Path, dst: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", task, str(src), str(dst)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="350m")
    p.add_argument("--workdir", default="/tmp/bench_convert")
    p.add_argument("--tasks", nargs="+", default=["to-hf", *TASKS], choices=["to-hf", *TASKS])
    p.add_argument("--child", nargs=3, metavar=("TASK", "SRC", "DST"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(*args.child)
        return
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    info = make_checkpoint(args.preset, work / "ckpt")
    print(f"preset {args.preset}: {info['params']:,} parameters, fp32 model {info['model_mib']:,.0f} MiB, "
          f"largest tensor {info['largest_tensor_mib']:,.0f} MiB, one layer {info['one_layer_mib']:,.0f} MiB")
    rows = [run("to-hf", work / "ckpt", work / "hf"),  # from-hf reads what to-hf wrote
            *(run(t, *TASKS[t](work)) for t in args.tasks if t != "to-hf")]
    print("| conversion | seconds | peak anon above import (MiB) | peak RSS above import (MiB) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['seconds']:.1f} | {r['anon_above_import_mib']:,.0f} | "
              f"{r['rss_above_import_mib']:,.0f} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
