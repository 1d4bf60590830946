"""Launch overhead: time from command to the first logged training step, torchrun vs mpiexec.

Tiny model, 2 ranks, DDP over gloo, 3 steps; the launchers alternate round after round.

    python bench/bench_launch.py --rounds 3
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from toy_shard import write_shard  # noqa: E402


def first_step_time(cmd: list[str], run: Path, env: dict) -> tuple[float, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd + [f"logging.run_dir={run}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = None
    while proc.poll() is None:
        metrics = run / "metrics.jsonl"
        if first is None and metrics.exists() and metrics.read_text().strip():
            first = time.perf_counter() - t0
        time.sleep(0.05)
    if proc.returncode:
        raise SystemExit(f"{cmd[0]} failed with status {proc.returncode}")
    total = time.perf_counter() - t0
    return first or total, total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    tmp = Path(tempfile.mkdtemp())
    shard = write_shard(tmp / "toy_text_document", n_docs=200)
    common = ["model=tiny", "model.vocab_size=256", "model.seq_len=32", f"data.blend=[{shard}]",
              f"data.cache_dir={tmp / 'cache'}", "train.steps=3", "train.global_batch_size=8",
              "train.micro_batch_size=2", "train.eval_interval=0", "checkpoint.interval=0",
              "logging.progress_bar=false", "logging.tensorboard=false", "logging.log_interval=1",
              "parallel.dp_replicate=2"]
    cmds = {"torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                         "--nproc_per_node", "2", "-m", "hyperclova.train"]}
    if mpiexec:
        cmds["mpiexec"] = [mpiexec, "-n", "2", sys.executable, "-m", "hyperclova.train"]
    results = {k: [] for k in cmds}
    for rnd in range(args.rounds):
        for name, cmd in cmds.items():
            results[name].append(first_step_time(cmd + common, tmp / f"{name}{rnd}", env))
    print("| launcher | first step (s), each round | median | exit (s), each round |")
    print("|---|---|---|---|")
    for name, v in results.items():
        firsts = ", ".join(f"{a:.1f}" for a, _ in v)
        exits = ", ".join(f"{b:.1f}" for _, b in v)
        print(f"| {name} | {firsts} | {statistics.median(a for a, _ in v):.1f} | {exits} |")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
