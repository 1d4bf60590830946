"""The launch scripts parse, pass shellcheck (when installed), and their defaults are coherent."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

LAUNCH = Path(__file__).resolve().parents[2] / "launch"
SCRIPTS = ["slurm.sbatch", "torchrun.sh", "mpirun.sh", "common.sh", "clean_corpus.sbatch", "preprocess_data.sbatch"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_bash_syntax(name):
    out = subprocess.run(["bash", "-n", str(LAUNCH / name)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck():
    # -x follows the `. common.sh` the launchers share; its directive path is from the repo root
    out = subprocess.run(["shellcheck", "-x", *(str(LAUNCH / n) for n in SCRIPTS)],
                         capture_output=True, text=True, cwd=LAUNCH.parent)
    assert out.returncode == 0, out.stdout


def test_sbatch_one_task_per_gpu_and_requeue():
    text = (LAUNCH / "slurm.sbatch").read_text()
    opts = dict(re.findall(r"^#SBATCH --([\w-]+)=?(\S*)", text, re.M))
    assert opts["ntasks-per-node"] == opts["gpus-per-node"] == "8"
    assert int(opts["nodes"]) * int(opts["ntasks-per-node"]) == 16
    assert "requeue" in opts and opts["signal"].startswith("B:USR1")
    assert "scontrol requeue" in text and "checkpoint.resume=true" in text
    assert "srun" in text and "NCCL_IB_HCA" in text


@pytest.mark.parametrize("name", ["torchrun.sh", "mpirun.sh"])
def test_usage_and_missing_config(name, tmp_path):
    script = str(LAUNCH / name)
    out = subprocess.run(["bash", script], capture_output=True, text=True)
    assert out.returncode == 2 and "CONFIG" in out.stdout
    out = subprocess.run(["bash", script, str(tmp_path / "nope.yaml")], capture_output=True,
                         text=True)
    assert out.returncode == 2 and "not found" in out.stderr


def test_torchrun_multinode_needs_master_addr(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: tiny\n")
    out = subprocess.run(["bash", str(LAUNCH / "torchrun.sh"), str(cfg)], capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin", "NNODES": "2"})
    assert out.returncode == 2 and "MASTER_ADDR" in out.stderr
