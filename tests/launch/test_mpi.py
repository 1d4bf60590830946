"""MPI launch: discovery through mpi4py under `mpiexec -n 2` (mpich wheel, the [mpi] extra), and a
tiny data-parallel training whose losses equal the same run under torchrun."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from toy_shard import write_shard

MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep
                       + os.environ.get("PATH", ""))
pytestmark = pytest.mark.skipif(MPIEXEC is None or __import__("importlib").util.find_spec(
    "mpi4py") is None, reason="needs mpi4py and an mpiexec: pip install 'hyperclova[mpi]'")
ENV = dict(os.environ, OMP_NUM_THREADS="1")
for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID",
            "SLURM_STEP_ID", "HYPERCLOVA_LAUNCHER"):
    ENV.pop(var, None)

# each rank writes its own file: mpiexec may merge the ranks' stdout lines
PROBE = ("import os, sys; from hyperclova.launch import discover; d = discover(); "
         "open(os.path.join(sys.argv[1], f'rank{d.rank}'), 'w').write(' '.join(map(str, ["
         "d.rank, d.world_size, d.local_rank, d.local_world_size, d.master_addr, d.master_port, "
         "d.source, os.environ['RANK'], os.environ['MASTER_PORT']])))")


def test_mpiexec_discovery(tmp_path):
    out = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-c", PROBE, str(tmp_path)], env=ENV,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = [(tmp_path / f"rank{r}").read_text().split() for r in range(2)]
    assert [r[:4] for r in rows] == [["0", "2", "0", "2"], ["1", "2", "1", "2"]]
    assert rows[0][4:6] == rows[1][4:6]  # one rendezvous address and port, broadcast by rank 0
    assert {r[6] for r in rows} == {"mpi"} and [r[7] for r in rows] == ["0", "1"]
    assert rows[0][8] == rows[0][5]


def _losses(run_dir):
    rows = [json.loads(line) for line in open(run_dir / "metrics.jsonl", encoding="utf-8")]
    return [(r["step"], r["loss"]) for r in rows if r.get("kind", "train") == "train" and "loss" in r]


def test_mpiexec_training_equals_torchrun(tmp_path):
    shard = write_shard(tmp_path / "toy_text_document", n_docs=200)
    common = ["model.n_layers=2", "model.d_model=64", "model.n_heads=4", "model.vocab_size=256",
              "model.seq_len=32", f"data.blend=[{shard}]", "train.steps=3",
              "train.global_batch_size=8", "train.micro_batch_size=2", "train.lr=3e-3",
              "train.eval_interval=0", "schedule.warmup_steps=1", "checkpoint.interval=0",
              "logging.progress_bar=false", "logging.tensorboard=false", "logging.log_interval=1",
              "parallel.dp_replicate=2"]
    runs = {"torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                         "--nproc_per_node", "2", "-m", "hyperclova.train"],
            "mpi": [MPIEXEC, "-n", "2", sys.executable, "-m", "hyperclova.train"]}
    # both jobs at once (own run and cache directories, own free ports): start-up dominates
    procs = {name: subprocess.Popen(
        cmd + common + [f"logging.run_dir={tmp_path / name}", f"data.cache_dir={tmp_path / name}c"],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name, cmd in runs.items()}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}:\n{out[-4000:]}"
    losses = {name: _losses(tmp_path / name) for name in runs}
    assert len(losses["mpi"]) == 3
    assert losses["mpi"] == losses["torchrun"]
