"""launch/clean_corpus.sbatch end to end, with a stand-in `sbatch` that runs each job at once."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hyperclova.corpus.recipe import DEFAULT_RECIPE
from hyperclova.corpus.synthetic import generate_corpus
from fake_sbatch import install

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_sbatch_launcher_matches_local_run(tmp_path):
    generate_corpus(tmp_path / "raw.jsonl", n_docs=300, seed=5, noise=1.0)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(DEFAULT_RECIPE.read_text(encoding="utf-8").replace("task_mb: 32", "task_mb: 0.03"))
    bindir = install(tmp_path / "bin")
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "INPUT": str(tmp_path / "raw.jsonl"),
           "OUTPUT": str(tmp_path / "slurm"), "RECIPE": str(recipe), "ARRAY": "2", "PY": sys.executable,
           "FAKE_SBATCH_LOG": str(tmp_path / "jobs.log"), "OMP_NUM_THREADS": "1"}
    res = subprocess.run(["bash", "launch/clean_corpus.sbatch"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    jobs = (tmp_path / "jobs.log").read_text().splitlines()
    assert [j.split("--stage ")[1].split()[0] for j in jobs] == ["process", "dedup", "finalize", "report"]
    local = tmp_path / "local"
    subprocess.run([sys.executable, "tools/clean_corpus.py", "--input", str(tmp_path / "raw.jsonl"),
                    "--output", str(local), "--recipe", str(recipe)], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=120)
    shards = sorted(p.name for p in (local / "data").glob("*.jsonl"))
    assert len(shards) >= 3
    for name in shards:
        assert (tmp_path / "slurm" / "data" / name).read_bytes() == (local / "data" / name).read_bytes()
    assert (tmp_path / "slurm" / "report.json").exists()
