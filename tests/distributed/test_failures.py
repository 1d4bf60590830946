"""Failure behaviour (docs/parallel.md): a rank that raises, is killed, or hangs makes the whole job
exit non-zero well within the process-group timeout, naming the failing rank and its error."""
from __future__ import annotations

import time

import pytest

from dist_harness import launch, trainer_overrides
from toy_shard import write_shard

TIMEOUT_S = 10  # train.dist_timeout_s for these runs


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    return write_shard(tmp_path_factory.mktemp("data") / "toy_text_document", n_docs=100)


def _run_faulty(mode: str, shard, run_dir):
    args = trainer_overrides(shard, run_dir, "parallel.dp_replicate=2",
                             f"train.dist_timeout_s={TIMEOUT_S}", "checkpoint.interval=0")
    start = time.monotonic()
    proc = launch(2, "tests/distributed/fault_worker.py", mode, "1", *args, timeout=180)
    return proc, time.monotonic() - start


def test_raising_rank_fails_the_job_once(shard, tmp_path):
    proc, _ = _run_faulty("raise", shard, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "injected failure on rank 1" in out
    # torchrun's summary names the first failure (our rank, its error) once.
    assert out.count("Root Cause (first observed failure)") == 1
    root = out.split("Root Cause (first observed failure)")[1]
    assert "rank      : 1" in root and "injected failure on rank 1" in root


def test_killed_rank_does_not_hang_survivors(shard, tmp_path):
    proc, elapsed = _run_faulty("kill", shard, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Signal 9 (SIGKILL)" in out and "rank      : 1" in out.split("Root Cause")[1]
    assert elapsed < 150


def test_silent_rank_times_out_instead_of_hanging(shard, tmp_path):
    # Rank 1 stays alive but stops taking part: rank 0's next collective must fail after the
    # configured timeout (not the 10-minute default), which ends the job.
    proc, elapsed = _run_faulty("hang", shard, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "rank      : 0" in out.split("Root Cause")[1]
    assert elapsed < 150


def test_collective_mismatch_detection_from_config():
    proc = launch(2, "tests/distributed/debug_worker.py", "true", timeout=120,
                  env={"TORCH_DISTRIBUTED_DEBUG": "OFF"})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Detected mismatch between collectives" in out
    assert "no mismatch detected" not in out
