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


def torchrun(nproc: int, out: Path, ckpt: str, *overrides: str) -> None:
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "--monitor-interval=0.2", str(HERE / "dp_worker.py"), str(out), ckpt, *overrides]
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


def test_dp2_matches_one_process(ckpt, one, tmp_path):
    torchrun(2, tmp_path / "dp2", ckpt)
    dp = json.loads((tmp_path / "dp2" / "nsmc.json").read_text(encoding="utf-8"))
    assert dp["layout"] == {"dp": 2, "tp": 1, "pp": 1}
    same_results(one, tmp_path / "dp2")


@pytest.mark.parametrize("layout", ["parallel.tp=2", pytest.param("parallel.pp=2", marks=pytest.mark.slow)])
def test_model_parallel_matches_one_process(ckpt, one, tmp_path, layout, request):
    """The engine's forward_eval, forward only; pp2 runs with `make test-slow`."""
    if "slow" in request.keywords and "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("pipeline-parallel evaluation runs with -m slow (make test-slow)")
    torchrun(2, tmp_path / "mp", ckpt, layout)
    res = json.loads((tmp_path / "mp" / "nsmc.json").read_text(encoding="utf-8"))
    degree = layout.split(".")[1].split("=")[0]
    assert res["layout"][degree] == 2 and res["layout"]["dp"] == 1
    same_results(one, tmp_path / "mp")
