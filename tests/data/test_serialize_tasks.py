"""The serializer as resumable tasks: every executor merges into the bytes of a one-process run,
interrupted runs resume without redoing finished tasks, and changed inputs are refused."""
from __future__ import annotations

import gzip
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hyperclova.data import serialize_tasks
from hyperclova.data.serialize import preprocess
from hyperclova.data.serialize_tasks import preprocess_tasks
from hyperclova.errors import UserError
from fake_sbatch import install

ROOT = Path(__file__).resolve().parents[2]
TASK_BYTES = 30_000  # the 300-document corpus (~150 kB) becomes several tasks


@pytest.fixture(scope="module")
def inputs(corpus_and_tokenizer, tmp_path_factory):
    """The corpus split over a plain file (several tasks, one bad line mid-file) and a .gz (one task)."""
    corpus, tok = corpus_and_tokenizer
    d = tmp_path_factory.mktemp("tasks_in")
    lines = open(corpus, "rb").read().splitlines(keepends=True)
    (d / "a.jsonl").write_bytes(b"".join(lines[:150] + [b'{"text": 7}\n'] + lines[150:200]))
    (d / "b.jsonl.gz").write_bytes(gzip.compress(b"".join(lines[200:])))
    return [str(d / "a.jsonl"), str(d / "b.jsonl.gz")], tok


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    files, tok = inputs
    out = tmp_path_factory.mktemp("tasks_ref") / "ref"
    stats = preprocess(files, str(out), tok, json_keys=["text"], workers=1, append_eod=True, progress=False)
    return out, stats


def _shard_bytes(prefix) -> dict:
    return {s: Path(f"{prefix}_text_document{s}").read_bytes() for s in (".bin", ".idx", ".meta.json")}


def test_local_tasks_merge_into_the_one_process_bytes(inputs, reference, tmp_path):
    files, tok = inputs
    ref, ref_stats = reference
    out = tmp_path / "local"
    stats = preprocess_tasks(files, str(out), tok, executor="local", workers=2, append_eod=True,
                             task_bytes=TASK_BYTES)
    assert stats.tasks >= 5
    assert _shard_bytes(out) == _shard_bytes(ref)
    assert stats.read == ref_stats.read  # the same counts and the same file:line of the bad line
    assert stats.read.examples["non_string"] == [f"{files[0]}:151: 'text' is int"]
    assert not (tmp_path / "local.tasks").exists()  # the work directory goes after the merge
    assert sorted(os.listdir(tmp_path)) == [f"local_text_document{s}" for s in (".bin", ".idx", ".meta.json")]


def test_slurm_array_interrupted_and_resumed(inputs, reference, tmp_path, monkeypatch):
    files, tok = inputs
    out, work = str(tmp_path / "s"), tmp_path / "s.tasks"
    preprocess_tasks(files, out, tok, executor="local", append_eod=True, task_bytes=TASK_BYTES, stage="plan")
    n = len(serialize_tasks.load_plan(work)["ranges"])

    def element(k: int, count: int = 2) -> None:
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(k))
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", str(count))
        preprocess_tasks([], out, None, executor="slurm", stage="encode")

    # Element 0 of 2 is killed in its second task: a crash, not a clean exit.
    real, calls = serialize_tasks.encode_ranges, []

    def dies_in_second_task(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise SystemExit("killed")
        return real(*args, **kw)

    monkeypatch.setattr(serialize_tasks, "encode_ranges", dies_in_second_task)
    with pytest.raises(SystemExit):
        element(0)
    monkeypatch.setattr(serialize_tasks, "encode_ranges", real)
    # What a SIGKILLed writer would leave: temporaries of a process that no longer exists.
    stale = work / f"00002_text_document.tmp-{socket.gethostname()}-999999999.bin"
    stale.write_bytes(b"partial")
    assert sorted(p.name for p in work.glob("*.done")) == ["00000.done"]
    with pytest.raises(UserError, match=rf"merge needs every task encoded; {n - 1} of {n} are not"):
        preprocess_tasks([], out, None, executor="local", stage="merge")

    element(1)
    done_before = {p.name: p.stat().st_mtime_ns for p in work.glob("*.done")}
    element(0)  # the resubmitted element skips task 0 and redoes task 2
    assert all((work / name).stat().st_mtime_ns == t for name, t in done_before.items())
    assert len(list(work.glob("*.done"))) == n and not stale.exists()
    stats = preprocess_tasks([], out, None, executor="local", stage="merge")
    assert _shard_bytes(out) == _shard_bytes(reference[0])
    assert stats.read == reference[1].read


def test_sbatch_script_matches_one_process(inputs, reference, tmp_path):
    files, tok = inputs
    bindir = install(tmp_path / "bin")
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "INPUT": " ".join(files),
           "OUTPUT_PREFIX": str(tmp_path / "sb"), "TOKENIZER": tok, "ARRAY": "2", "CPUS": "1", "APPEND_EOD": "1",
           "TASK_MB": str(TASK_BYTES / 2**20), "LOGS": str(tmp_path / "logs"), "PY": sys.executable,
           "FAKE_SBATCH_LOG": str(tmp_path / "jobs.log"), "OMP_NUM_THREADS": "1"}
    res = subprocess.run(["bash", "launch/preprocess_data.sbatch"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    jobs = (tmp_path / "jobs.log").read_text().splitlines()
    assert [j.split("--stage ")[1].split()[0] for j in jobs] == ["encode", "merge"]
    assert _shard_bytes(tmp_path / "sb") == _shard_bytes(reference[0])


def test_ray_local_workers_give_the_same_bytes(inputs, reference, tmp_path):
    pytest.importorskip("ray", reason="ray not installed (extra [ray])")
    files, tok = inputs
    out = tmp_path / "ray"
    preprocess_tasks(files, str(out), tok, executor="ray", workers=2, append_eod=True, task_bytes=TASK_BYTES)
    assert _shard_bytes(out) == _shard_bytes(reference[0])


def test_changed_inputs_settings_and_strict(inputs, tmp_path):
    files, tok = inputs
    src = tmp_path / "a.jsonl"
    shutil.copy(files[0], src)
    out = str(tmp_path / "o")
    preprocess_tasks([str(src)], out, tok, executor="local", task_bytes=TASK_BYTES, stage="plan")
    with pytest.raises(UserError, match="holds tasks planned with other settings"):
        preprocess_tasks([str(src)], out, tok, executor="local", append_eod=True, task_bytes=TASK_BYTES,
                         stage="plan")
    with open(src, "ab") as f:  # documents appended after planning
        f.write(b'{"text": "new"}\n')
    with pytest.raises(UserError, match=r"the inputs changed since .* planned \(.*a\.jsonl: [\d,]+ -> [\d,]+ bytes"):
        preprocess_tasks([str(src)], out, tok, executor="local", task_bytes=TASK_BYTES)
    with pytest.raises(UserError, match=r"a\.jsonl: [\d,]+ -> [\d,]+ bytes.*rerun with --overwrite"):
        preprocess_tasks([], out, None, executor="local", stage="encode")
    # --overwrite starts over; --strict names the bad line's line in the file, from any task.
    with pytest.raises(UserError, match=r"a\.jsonl:151: value is not a string"):
        preprocess_tasks([str(src)], out, tok, executor="local", task_bytes=TASK_BYTES, overwrite=True,
                         strict=True)
    with pytest.raises(UserError, match="slurm runs one stage per job"):
        preprocess_tasks([str(src)], out, tok, executor="slurm")
