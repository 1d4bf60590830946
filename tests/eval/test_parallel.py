"""Evaluation under torchrun on gloo gives the single process's scores and predictions."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dp_worker import run

HERE = Path(__file__).parent
REPO = HERE.parents[1]


def run_single(ckpt, out: Path) -> None:
    out.mkdir()
    run(str(out), ckpt)


def torchrun(nproc: int, out: Path, ckpt: str, *layouts: str) -> None:
    """Each layout "name[:override,...]" writes out/name (tests/eval/dp_worker.py)."""
    out.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "--monitor-interval=0.2", str(HERE / "dp_worker.py"), str(out), ckpt, *layouts]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def same_results(a: Path, b: Path) -> None:
    for name in ("nsmc.json", "korquad.json"):
        ra, rb = (json.loads((d / name).read_text(encoding="utf-8")) for d in (a, b))
        for key, m in ra["metrics"].items():
            assert rb["metrics"][key]["runs"] == pytest.approx(m["runs"], abs=1e-9), (name, key)
        assert ra["first_prompts"] == rb["first_prompts"]
        assert ra["protocol"] == rb["protocol"]
    pa = [json.loads(x) for x in (a / "nsmc_pred.jsonl").read_text(encoding="utf-8").splitlines()]
    pb = [json.loads(x) for x in (b / "nsmc_pred.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["run"], r["where"], r["prediction"]) for r in pa] == \
        [(r["run"], r["where"], r["prediction"]) for r in pb]
    for ra, rb in zip(pa, pb):
        assert rb["scores"] == pytest.approx(ra["scores"], abs=1e-5)
    assert json.loads((a / "korquad_pred.json").read_text(encoding="utf-8")) == \
        json.loads((b / "korquad_pred.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def one(ckpt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval_one") / "one"
    run_single(ckpt, out)
    return out


@pytest.fixture(scope="module")
def two(ckpt, tmp_path_factory) -> Path:
    """dp2, then tp2 (the engine's forward_eval, forward only), in one torchrun launch."""
    out = tmp_path_factory.mktemp("eval_two")
    torchrun(2, out, ckpt, "dp2", "tp2:parallel.tp=2")
    return out


def test_dp2_matches_one_process(one, two):
    dp = json.loads((two / "dp2" / "nsmc.json").read_text(encoding="utf-8"))
    assert dp["layout"] == {"dp": 2, "tp": 1, "pp": 1}
    same_results(one, two / "dp2")


def test_tp2_matches_one_process(one, two):
    res = json.loads((two / "tp2" / "nsmc.json").read_text(encoding="utf-8"))
    assert res["layout"] == {"dp": 1, "tp": 2, "pp": 1}
    same_results(one, two / "tp2")


@pytest.mark.slow
def test_pp2_matches_one_process(ckpt, one, tmp_path):
    """Pipeline-parallel evaluation (make test-slow)."""
    torchrun(2, tmp_path, ckpt, "pp2:parallel.pp=2")
    res = json.loads((tmp_path / "pp2" / "nsmc.json").read_text(encoding="utf-8"))
    assert res["layout"] == {"dp": 1, "tp": 1, "pp": 2}
    same_results(one, tmp_path / "pp2")
