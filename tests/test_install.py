"""A non-editable `pip install .` runs the tools without a checkout: console scripts, the shipped
corpus recipe and run configs found as package data, the serializer, and one training step."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("install")
    src = d / "src"  # a copy, so the build leaves nothing in the checkout
    src.mkdir()
    for name in ("setup.py", "README.md"):
        shutil.copy(ROOT / name, src)
    for name in ("hyperclova", "configs"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    venv = d / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # This environment's packages (torch, ...) are reused rather than downloaded again: a plain path
    # entry, which runs none of its .pth hooks, so its own (editable) hyperclova stays invisible.
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "_shared_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps",
                    "--no-build-isolation", str(src)], check=True, capture_output=True, timeout=300)
    return venv


def _run(venv: Path, cwd: Path, *cmd: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    res = subprocess.run([str(venv / "bin" / cmd[0]), *cmd[1:]], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, f"{cmd}\n{res.stdout}\n{res.stderr}"
    return res


def test_installed_tools_run_without_a_checkout(venv, tmp_path):
    where = _run(venv, tmp_path, "python", "-c", "import hyperclova.paths as p; print(p.__file__, p.CONFIG_DIR)")
    module, configs = where.stdout.split()
    assert module.startswith(str(venv)) and configs.startswith(str(venv)), where.stdout
    _run(venv, tmp_path, "hyperclova-generate-corpus", "--output", "raw.jsonl", "--docs", "300", "--noise", "1")
    cleaned = _run(venv, tmp_path, "hyperclova-clean-corpus", "--input", "raw.jsonl", "--output", "clean")
    assert "near_dedup" in cleaned.stdout  # the default recipe, found as package data
    _run(venv, tmp_path, "hyperclova-train-tokenizer", "--input", "clean/data", "--output", "tok", "--type", "bbpe",
         "--vocab-size", "400", "--no-progress")
    done = _run(venv, tmp_path, "hyperclova-preprocess-data", "--input", "clean/data", "--output-prefix", "data/c",
                "--tokenizer", "tok", "--workers", "1", "--append-eod", "--no-progress")
    assert "wrote data/c_text_document.bin/.idx" in done.stdout
    _run(venv, tmp_path, "hyperclova-train", "--config", "demo", "train.steps=1", "data.blend=[data/c_text_document]",
         "data.tokenizer=tok", "logging.run_dir=run")
    steps = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl", encoding="utf-8")]
    assert any(s.get("step") == 1 and "loss" in s for s in steps)
    assert (tmp_path / "run" / "checkpoints" / "step_00000001").is_dir()
