"""Runs and checkpoints that cannot be corrupted by accident (docs/checkpoints.md): one trainer per
checkpoint directory, asynchronous saves that a crash cannot half-publish, digests that catch a
damaged file of the right size, an unreadable .metadata that falls back like any other damage, and
console output fit for log files."""
from __future__ import annotations

import json
import os
import pty
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hyperclova.config import dump_yaml
from hyperclova.convert.dcp import CheckpointReader
from hyperclova.errors import UserError
from hyperclova.launch import TORCHRUN_VARS
from hyperclova.train.checkpoint import LATEST, MARKER, find_resumable, resolve_load_path
from hyperclova.train.lock import LOCK_FILE, DirectoryLock, DirectoryLocked
from hyperclova.train.metrics import Metrics, _ranges
from hyperclova.train.trainer import nccl_env_defaults, train

REPO = Path(__file__).resolve().parents[2]


def losses(result):
    return result["losses"]


def _train_rows(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["kind"] == "train"}


def _wait_for(condition, proc, timeout=180):
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"worker exited early ({proc.returncode}):\n{proc.stdout.read()[-4000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("worker did not reach the stalled save in time")
        time.sleep(0.2)


def test_async_save_killed_mid_write_keeps_the_previous_checkpoint(make_cfg, tmp_path, capsys):
    """A real process with checkpoint.async_save is killed while its step-8 save is being
    written, with training already past it: a second trainer started meanwhile is refused and
    told who holds the directory; afterwards `latest` still names step 4, and a new run takes
    over the dead run's lock and resumes from step 4 with exactly the losses of an undisturbed
    (synchronous) run."""
    reference = losses(train(make_cfg("train.steps=12", run="reference")))
    cfg = make_cfg("train.steps=12", "checkpoint.async_save=true", "logging.log_interval=1")
    run = Path(cfg.logging.run_dir)
    ckpt = cfg.checkpoint_dir
    run.mkdir(parents=True)
    (run / "run.yaml").write_text(dump_yaml(cfg), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}  # its own port
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "tests/train/stall_worker.py", "8",
                             "--config", str(run / "run.yaml")],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        # The step-8 write has stalled and training has carried on to the end of the run.
        _wait_for(lambda: (run / "stalled").exists() and (run / "metrics.jsonl").exists()
                  and 12 in _train_rows(run), proc)
        assert (ckpt / LATEST).read_text() == "step_00000004"

        with pytest.raises(DirectoryLocked) as refused:
            train(cfg)
        msg = str(refused.value)
        assert f"pid {proc.pid} on host {socket.gethostname()}" in msg and str(ckpt) in msg
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)

    assert [_train_rows(run)[s] for s in range(1, 13)] == reference  # async saving changed nothing
    assert (ckpt / LATEST).read_text() == "step_00000004"
    partial = ckpt / "step_00000008.tmp"
    assert list(partial.glob("*.distcp")) and not (partial / MARKER).exists()
    assert not (ckpt / "step_00000008").exists()
    assert find_resumable(ckpt, log=print) == ckpt / "step_00000004"

    capsys.readouterr()
    resumed = train(cfg)
    out = capsys.readouterr().out
    assert f"pid {proc.pid}" in out and "ended without releasing its lock" in out
    assert "resumed from" in out and "step_00000004 at step 4" in out
    assert losses(resumed) == reference[4:]  # bitwise
    assert (ckpt / LATEST).read_text() == "step_00000012"
    assert (ckpt / LOCK_FILE).read_text() == ""  # released cleanly this time
    # Its second async save reused the host copy of the first: model, optimizer and loop state
    # must still be exactly what the synchronous reference saved at step 12. (Not the RNG: a
    # resumed run builds its data loader after restoring it, which draws one number.)
    ours = CheckpointReader(ckpt / "step_00000012")
    theirs = CheckpointReader(tmp_path / "reference" / "checkpoints" / "step_00000012")
    assert ours.keys == theirs.keys
    keys = [k for k in ours.keys if not k.startswith("rng.")]
    a, b = ours.load(keys), theirs.load(keys)
    for key in a:
        same = torch.equal(a[key], b[key]) if isinstance(a[key], torch.Tensor) else a[key] == b[key]
        assert same, key


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _legacy_marker(step_dir: Path) -> None:
    """COMPLETE as written before digests: sizes only."""
    marker = json.loads((step_dir / MARKER).read_text())
    sizes = {p.name: p.stat().st_size for p in step_dir.iterdir() if p.name != MARKER}
    (step_dir / MARKER).write_text(json.dumps({"step": marker["step"], "files": sizes}))


def test_damaged_checkpoints_fall_back_to_the_last_good_one(make_cfg, tmp_path, capsys):
    first = losses(train(make_cfg("train.steps=12", "checkpoint.keep_last=3")))
    ckpt = tmp_path / "run" / "checkpoints"
    step4, step8, step12 = (ckpt / f"step_{s:08d}" for s in (4, 8, 12))
    files = json.loads((step12 / MARKER).read_text())["files"]
    assert set(files) == {p.name for p in step12.iterdir()} - {MARKER}
    assert all(len(v["xxh3_128"]) == 32 and v["bytes"] > 0 for v in files.values())

    data = max(step12.glob("*.distcp"), key=lambda p: p.stat().st_size)
    _flip_byte(data)  # one bit, same size: only the digest can tell
    (step8 / ".metadata").write_bytes(b"\x80\x04not a pickle at all")
    _legacy_marker(step8)  # a marker that agrees with the damaged file: the unpickling must fail
    _legacy_marker(step4)  # an older checkpoint without digests is still usable

    with pytest.raises(UserError, match=f"{data.name} is corrupt"):
        resolve_load_path(step12)
    capsys.readouterr()
    assert find_resumable(ckpt, log=print) == step4
    out = capsys.readouterr().out
    assert f"step_00000012 is unusable: file {data.name} is corrupt" in out
    assert "step_00000008 is unusable: unreadable .metadata" in out
    resumed = train(make_cfg("train.steps=12", "checkpoint.keep_last=3"))
    assert losses(resumed) == first[4:]


def test_lock_refuses_a_second_holder_and_survives_its_death(tmp_path):
    first = DirectoryLock(tmp_path / "ckpt")
    with pytest.raises(DirectoryLocked, match=f"pid {os.getpid()} on host"):
        DirectoryLock(tmp_path / "ckpt")  # a second open file, even in the same process
    first.release()
    assert (tmp_path / "ckpt" / LOCK_FILE).read_text() == ""
    DirectoryLock(tmp_path / "ckpt").release()
    # A holder killed outright: the kernel drops its lock and the next one says whose it was.
    code = ("import sys, time; from pathlib import Path; from hyperclova.train.lock import "
            "DirectoryLock; lock = DirectoryLock(Path(sys.argv[1])); print('held', flush=True); "
            "time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "ckpt")], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline() == "held\n"
        with pytest.raises(DirectoryLocked, match=f"pid {proc.pid} "):
            DirectoryLock(tmp_path / "ckpt")
    finally:
        proc.kill()
        proc.wait(timeout=60)
    notes = []
    DirectoryLock(tmp_path / "ckpt", log=notes.append).release()
    assert len(notes) == 1 and f"pid {proc.pid}" in notes[0] and "taking it over" in notes[0]


def test_lock_can_be_switched_off(make_cfg, tmp_path):
    held = DirectoryLock(tmp_path / "run" / "checkpoints")
    try:
        with pytest.raises(UserError, match="in use by another training run"):
            train(make_cfg("train.steps=1"))
        assert train(make_cfg("train.steps=1", "checkpoint.lock=false"))["step"] == 1
    finally:
        held.release()


def test_progress_bar_only_on_a_terminal(make_cfg, monkeypatch, capsys):
    cfg = make_cfg("logging.progress_bar=true", "logging.log_interval=5")
    metrics = Metrics(cfg, True, 10, 0)  # stderr is captured by pytest: not a terminal
    assert metrics.bar is None
    for step in range(1, 11):
        metrics.log(step, {"loss": 1.0, "lr": 1e-3})
    metrics.close()
    captured = capsys.readouterr()
    assert "\r" not in captured.out + captured.err
    assert [line.split(" | ")[0] for line in captured.out.splitlines()] == \
        ["train step 5", "train step 10"]

    main, other = pty.openpty()
    terminal = os.fdopen(other, "w")
    monkeypatch.setattr(sys, "stderr", terminal)
    try:
        metrics = Metrics(cfg, True, 10, 0)
        assert metrics.bar is not None
        metrics.close()
    finally:
        terminal.close()
        os.close(main)


def test_nccl_defaults_never_override_the_user():
    everything = nccl_env_defaults({}, "runs/x")
    assert everything["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "3"
    assert everything["TORCH_FR_BUFFER_SIZE"] == everything["TORCH_NCCL_TRACE_BUFFER_SIZE"] == "20000"
    assert everything["TORCH_FR_DUMP_TEMP_FILE"].endswith("runs/x/comm_trace/rank_")
    # torchrun exports ASYNC_ERROR_HANDLING=1 itself; a user's old-name buffer size counts too
    user = {"TORCH_NCCL_ASYNC_ERROR_HANDLING": "1", "TORCH_NCCL_TRACE_BUFFER_SIZE": "0"}
    chosen = nccl_env_defaults(user, "runs/x")
    assert not set(chosen) & {"TORCH_NCCL_ASYNC_ERROR_HANDLING", "TORCH_FR_BUFFER_SIZE",
                              "TORCH_NCCL_TRACE_BUFFER_SIZE"}
    assert chosen["TORCH_NCCL_DUMP_ON_TIMEOUT"] == "1"


def test_rank_ranges_are_compact():
    assert _ranges([0, 1, 2, 3, 8]) == "0-3,8"
    assert _ranges([1]) == "1" and _ranges([0, 2, 4]) == "0,2,4"


def test_load_path_errors_name_the_problem(tmp_path):
    with pytest.raises(UserError, match="no such checkpoint directory"):
        resolve_load_path(tmp_path / "absent")
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    with pytest.raises(UserError, match=f"not a DCP checkpoint .*no '{LATEST}' file"):
        resolve_load_path(ckpt)
    (ckpt / LATEST).write_text("step_00000007\n")
    with pytest.raises(UserError, match=f"{LATEST} names 'step_00000007', which does not exist"):
        resolve_load_path(ckpt)
