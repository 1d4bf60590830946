"""Run safety with several ranks (docs/checkpoints.md): a job refused by the directory lock stops
on every rank at once; asynchronous saves of sharded state record every rank's digests, and a
resume shares the verification between ranks and falls back from a corrupted shard. Also the
rank-0 console helpers (print0, print_ranks) on a real process group."""
from __future__ import annotations

import json
import os

import pytest

from dist_harness import launch, train_losses, trainer_overrides
from toy_shard import write_shard
from hyperclova.train.checkpoint import MARKER
from hyperclova.train.lock import DirectoryLock


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    return write_shard(tmp_path_factory.mktemp("data") / "toy_text_document", n_docs=100)


def test_refused_job_stops_on_every_rank(shard, tmp_path):
    """Three ranks (the worker first tries the rank-0 console helpers on the group) start a
    trainer on a directory another run holds: every rank stops with the holder's name."""
    held = DirectoryLock(tmp_path / "ckpt")  # another run holds the directory
    try:
        proc = launch(3, "tests/distributed/print_ranks_worker.py",
                      *trainer_overrides(shard, tmp_path, "parallel.dp_replicate=3",
                                         "train.global_batch_size=6"), timeout=120)
    finally:
        held.release()
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert out.count(f"error: checkpoint directory {tmp_path / 'ckpt'} is in use by another "
                     f"training run (pid {os.getpid()} on host") == 3, out[-3000:]
    lines = proc.stdout.splitlines()
    assert lines.count("ranks 0,2: parity 0") == 1 and lines.count("rank 1: parity 1") == 1
    assert lines.count("said once") == 1


def test_async_sharded_save_digests_and_shared_verification(shard, tmp_path):
    args = trainer_overrides(shard, tmp_path, "parallel.dp_shard=2", "checkpoint.async_save=true",
                             "train.steps=4", "checkpoint.interval=2")
    proc = launch(2, "-m", "hyperclova.train", *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    first = train_losses(tmp_path)
    step4 = tmp_path / "ckpt" / "step_00000004"
    files = json.loads((step4 / MARKER).read_text())["files"]
    assert {"__0_0.distcp", "__1_0.distcp", ".metadata", "config.yaml"} <= set(files)
    assert set(files) == {p.name for p in step4.iterdir()} - {MARKER}  # side files folded in

    shard_file = step4 / "__1_0.distcp"  # written and hashed by rank 1
    data = bytearray(shard_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard_file.write_bytes(bytes(data))
    proc = launch(2, "-m", "hyperclova.train", *args)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert out.count("step_00000004 is unusable: file __1_0.distcp is corrupt") == 1
    assert "step_00000002 at step 2" in out
    again = train_losses(tmp_path)
    assert [again[s] for s in (3, 4)] == [first[s] for s in (3, 4)]
