"""Checkpoints through torch.distributed.checkpoint (DCP), safe against interruption and corruption.

Layout of `checkpoint.dir` (docs/checkpoints.md):
    step_00000100/      a DCP checkpoint (.metadata + *.distcp), config.yaml, COMPLETE
    latest              text: the name of the newest complete step directory
    .lock               held by the running trainer (hyperclova/train/lock.py)

A checkpoint is written under a temporary name; every file's size and xxh3-128 digest go into
COMPLETE, and only then is it renamed into place; `latest` is replaced atomically after that. Each
rank hashes the files it wrote itself, right after writing them, so no rank reads another's data.
On resume a checkpoint whose marker is missing, whose files do not match it (size or digest), or
whose `.metadata` cannot be read is reported and the previous one is used; the ranks share the
hashing. With `checkpoint.async_save` the write runs in a background thread while training goes on,
and the marker and `latest` move only once it has finished on every rank.
Keys are the plain model's FQNs (and FQN-keyed optimizer state), so DCP reshards a checkpoint
written in one parallel layout into any other.

DCP stores `.metadata` (and non-tensor entries) as pickles: loading a checkpoint runs code chosen by
whoever wrote it, so never load one from an untrusted source (use a `to-hf` safetensors export).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import xxhash
from torch.distributed.checkpoint.stateful import Stateful

from hyperclova.config import Config, dump_yaml
from hyperclova.errors import UserError

try:  # private helpers of torch's own staging; without them (or if they fail) stage as DCP does
    from torch.distributed._state_dict_utils import _copy_state_dict, _create_cpu_state_dict
except ImportError:  # pragma: no cover
    _copy_state_dict = _create_cpu_state_dict = None

MARKER = "COMPLETE"
LATEST = "latest"
DIGEST = "xxh3_128"  # ~5 GiB/s on one core, 5-7x zlib.crc32 (docs/benchmarks.md)
_DIGESTS_OF_RANK = "digests.rank{}.json"  # per-rank side file, folded into COMPLETE
_CHUNK = 8 * 2**20


class TrainState(Stateful):
    """Loop position: steps taken, samples consumed (the data position), steps skipped."""

    def __init__(self):
        self.step = 0
        self.consumed_samples = 0
        self.skipped_steps = 0

    def state_dict(self) -> dict:
        return {"step": self.step, "consumed_samples": self.consumed_samples,
                "skipped_steps": self.skipped_steps}

    def load_state_dict(self, sd: dict) -> None:
        self.step = int(sd["step"])
        self.consumed_samples = int(sd["consumed_samples"])
        self.skipped_steps = int(sd.get("skipped_steps", 0))


class RngState(Stateful):
    """This rank's torch RNG streams (dropout), stored under a per-rank key."""

    def __init__(self, rank: int):
        self.key = f"rank{rank}"

    def state_dict(self) -> dict:
        sd = {f"{self.key}.cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            sd[f"{self.key}.cuda"] = torch.cuda.get_rng_state()
        return sd

    def load_state_dict(self, sd: dict) -> None:
        torch.set_rng_state(sd[f"{self.key}.cpu"])
        if f"{self.key}.cuda" in sd and torch.cuda.is_available():
            torch.cuda.set_rng_state(sd[f"{self.key}.cuda"])


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _broadcast(obj):
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


# --- digests and the COMPLETE marker -------------------------------------------------------------


def file_digest(path: Path) -> str:
    h = xxhash.xxh3_128()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


class _Unusable(Exception):
    """Why a step directory is not a usable checkpoint (the message)."""


def read_marker(path: Path) -> dict[str, dict]:
    """{file name: {"bytes": n, DIGEST: hex}} from `path`/COMPLETE. Markers written before
    digests were recorded map names to sizes; those files are checked by size only."""
    if not path.is_dir():
        raise _Unusable("directory is missing")
    marker = path / MARKER
    if not marker.is_file():
        raise _Unusable("no COMPLETE marker (the save was interrupted)")
    try:
        data = json.loads(marker.read_text())
        if data.get("digest", DIGEST) != DIGEST:
            raise _Unusable(f"COMPLETE uses digest {data['digest']!r}; this version knows {DIGEST}")
        files = {}
        for name, entry in data["files"].items():
            entry = dict(entry) if isinstance(entry, dict) else {"bytes": entry}
            if not isinstance(entry["bytes"], int) or not isinstance(entry.get(DIGEST, ""), str):
                raise TypeError(name)
            files[name] = entry
        return files
    except (ValueError, KeyError, TypeError, AttributeError, OSError):
        raise _Unusable("unreadable COMPLETE marker") from None


def _check_files(path: Path, files: dict[str, dict]) -> None:
    """Sizes against the marker, and that DCP can read the metadata: cheap, no data read."""
    for name, want in files.items():
        f = path / name
        if not f.is_file():
            raise _Unusable(f"missing file {name}")
        size = f.stat().st_size
        if size != want["bytes"]:
            raise _Unusable(f"file {name} has {size} bytes, expected {want['bytes']}")
    try:  # a pickle: a damaged one fails in any of a dozen ways
        dcp.FileSystemReader(str(path)).read_metadata()
    except Exception as e:  # noqa: BLE001
        raise _Unusable(f"unreadable .metadata ({type(e).__name__}: {e})") from None


def verify_digests(path: Path, files: dict[str, dict], names: list[str]) -> str | None:
    """None when every file in `names` hashes to its recorded digest, else the first mismatch."""
    def check(name: str) -> str | None:
        try:
            if file_digest(path / name) == files[name][DIGEST]:
                return None
        except OSError as e:  # on another rank this must still become an answer, not a hang
            return f"cannot read file {name}: {e.strerror}"
        return f"file {name} is corrupt: its {DIGEST} digest differs from COMPLETE's"

    names = [n for n in names if DIGEST in files[n]]
    if not names:
        return None
    with ThreadPoolExecutor(min(4, len(names))) as pool:
        return next((r for r in pool.map(check, names) if r), None)


def check_complete(path: Path, verify: bool = True) -> str | None:
    """None when `path` is a complete checkpoint, else the reason it is not. `verify` reads every
    file to compare digests, in this process (find_resumable shares that work between ranks)."""
    reason, files = _checked_marker(path)
    if reason is not None or not verify:
        return reason
    return verify_digests(path, files, sorted(files))


def _checked_marker(path: Path) -> tuple[str | None, dict | None]:
    """(None, the marker's files) when the checks that read no data pass (marker, sizes,
    metadata), else (the reason, None)."""
    try:
        files = read_marker(path)
        _check_files(path, files)
    except _Unusable as e:
        return str(e), None
    return None, files


def _check_shared(path: Path) -> str | None:
    """check_complete on every rank of the running process group, each hashing a share of the
    files; all ranks get the same answer. Collective: call it on every rank."""
    if _world() == 1:
        return check_complete(path)
    reason, files = _broadcast(_checked_marker(path) if _rank() == 0 else None)
    if reason is not None:
        return reason
    mine = sorted(files)[_rank()::_world()]
    reasons: list = [None] * _world()
    dist.all_gather_object(reasons, verify_digests(path, files, mine))
    return next((r for r in reasons if r), None)


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Step directories, newest first; the one `latest` names goes first."""
    if not ckpt_dir.is_dir():
        return []
    steps = sorted((p for p in ckpt_dir.glob("step_*") if p.is_dir() and "." not in p.name),
                   key=lambda p: p.name, reverse=True)
    latest = ckpt_dir / LATEST
    if latest.is_file():
        named = ckpt_dir / latest.read_text().strip()
        if named in steps:
            steps.remove(named)
        steps.insert(0, named)
    return steps


def find_resumable(ckpt_dir: Path, log=print) -> Path | None:
    """The newest complete checkpoint; incomplete or corrupt ones are reported and skipped.
    Under a process group this is collective (every rank calls it and hashes a share)."""
    candidates = _broadcast(list_checkpoints(ckpt_dir) if _rank() == 0 else None)
    for path in candidates:
        reason = _check_shared(path)
        if reason is None:
            return path
        if _rank() == 0:
            log(f"checkpoint {path} is unusable: {reason}; trying the previous one")
    return None


def saved_groups(path: Path) -> set[str]:
    """Top-level groups (model, optim, train, rng) present in a DCP checkpoint."""
    meta = dcp.FileSystemReader(str(path)).read_metadata()
    return {key.split(".", 1)[0] for key in meta.state_dict_metadata}


# --- writing -------------------------------------------------------------------------------------


class _DigestingWriter(dcp.FileSystemWriter):
    """DCP's file writer, plus: this rank hashes the files it has just written (still in the page
    cache) into a small side file, which the finalising rank folds into COMPLETE.

    For async saves it also stages: the state is copied into host memory that is allocated once
    and reused by every later save of the run (pinned on GPUs, for fast device-to-host copies).
    Fresh memory at each save costs page faults: ~10x slower than the copy itself on our CPU
    machine (docs/benchmarks.md). One writer serves the whole run; DCP points it at each new
    directory through `reset`."""

    def __init__(self, path: Path, rank: int):
        super().__init__(str(path))
        self.dir, self.rank = path, rank
        self._staged = None

    def stage(self, state_dict: dict) -> dict:
        if _create_cpu_state_dict is not None:
            try:
                if self._staged is None:
                    self._staged = _create_cpu_state_dict(state_dict,
                                                          pin_memory=torch.cuda.is_available())
                return _copy_state_dict(state_dict, self._staged, type_check=False)
            except Exception:  # noqa: BLE001 - the state changed shape, or this torch's helpers
                self._staged = None  # differ: this save stages DCP's way, the next one re-caches
        return super().stage(state_dict)

    def reset(self, checkpoint_id=None) -> None:
        super().reset(checkpoint_id)
        if checkpoint_id is not None:
            self.dir = Path(checkpoint_id)

    def write_data(self, plan, planner):
        written = super().write_data(plan, planner)
        results = written.wait()
        names = sorted({r.storage_data.relative_path for r in results})
        digests = {name: file_digest(self.dir / name) for name in names}
        (self.dir / _DIGESTS_OF_RANK.format(self.rank)).write_text(json.dumps(digests))
        return written


class _PendingSave:
    def __init__(self, future, step: int, tmp: Path, final: Path):
        self.future, self.step, self.tmp, self.final = future, step, tmp, final
        self.finalized = False


class CheckpointManager:
    """Saves and restores `states` (name -> Stateful) in `cfg.checkpoint_dir`. Every method is
    collective under a process group (call it on every rank) except `poll` and `close`."""

    def __init__(self, cfg: Config, states: dict[str, Stateful], log=print):
        self.cfg = cfg
        self.dir = cfg.checkpoint_dir
        self.states = states
        self.log = log
        self.async_save = cfg.checkpoint.async_save
        self._pending: _PendingSave | None = None
        self._writer = _DigestingWriter(self.dir, _rank())
        self._group = None
        if self.async_save and dist.is_initialized():
            # The background write runs DCP's collectives while training runs its own: a group of
            # their own keeps the two from interleaving, and it must be gloo (staging is on CPU).
            self._group = dist.new_group(backend="gloo",
                                         timeout=timedelta(seconds=cfg.train.dist_timeout_s))

    def save(self, step: int, wait: bool = False) -> Path:
        """Write step `step`. With async_save this returns once the state is copied to host
        memory (training may then change it) and the write goes on in the background; `wait`
        (the last save of a run) waits for it. One save is in flight at most."""
        self.wait()
        final = self.dir / step_dir_name(step)
        tmp = self.dir / f"{final.name}.tmp"
        if _rank() == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        _barrier()
        if self.async_save:
            future = dcp.async_save(self.states, checkpoint_id=str(tmp), storage_writer=self._writer,
                                    process_group=self._group)
            self._pending = _PendingSave(future, step, tmp, final)
            if wait:
                self.wait()
        else:
            dcp.save(self.states, checkpoint_id=str(tmp), storage_writer=self._writer)
            self._pending = _PendingSave(None, step, tmp, final)
            self.wait()
        return final

    def poll(self) -> None:
        """Rank 0, between steps: finalise a background save as soon as it has finished, so a
        crash later loses as little as possible. Its future completes only after every rank's
        files and the metadata are written (DCP gathers all ranks' results first). Not collective."""
        p = self._pending
        if (p is not None and not p.finalized and _rank() == 0 and p.future.done()
                and p.future.exception() is None):
            self._finalize(p)

    def wait(self) -> None:
        """Wait for the save in flight (if any) on every rank, then finalise it."""
        p, self._pending = self._pending, None
        if p is None:
            return
        if p.future is not None:
            p.future.result()  # raises the write's error on every rank alike
        if _rank() == 0 and not p.finalized:
            self._finalize(p)
        _barrier()

    def close(self) -> None:
        """End of the run, also when it is failing: keep a save that was in flight if it
        completes, without any collective beyond the save's own."""
        p, self._pending = self._pending, None
        if p is None or p.future is None:
            return
        try:
            p.future.result()
        except Exception as e:  # noqa: BLE001 - already unwinding from another error, or reporting
            self.log(f"warning: the checkpoint of step {p.step} was not completed: {e}")
            return
        if _rank() == 0 and not p.finalized:
            self._finalize(p)

    def _finalize(self, p: _PendingSave) -> None:
        if p.final.exists():
            shutil.rmtree(p.final)
        finalize_step_dir(p.tmp, p.final, self.cfg, p.step)
        p.finalized = True
        self._prune()

    def _prune(self) -> None:
        complete = [p for p in list_checkpoints(self.dir) if check_complete(p, verify=False) is None]
        complete.sort(key=lambda p: p.name, reverse=True)
        for old in complete[self.cfg.checkpoint.keep_last:]:
            shutil.rmtree(old, ignore_errors=True)

    def load(self, path: Path, groups: set[str] | None = None) -> set[str]:
        """Load the named state groups (default: all that the checkpoint has); returns them."""
        present = saved_groups(path)
        wanted = set(self.states) if groups is None else groups
        missing = wanted - present - {"rng"}
        if missing:
            self.log(f"checkpoint {path} has no {sorted(missing)} state: starting those afresh")
        names = (wanted & present) - {"rng"}
        if "rng" in wanted and "rng" in present:
            names |= self._rng_if_saved(path)
        dcp.load({k: self.states[k] for k in names}, checkpoint_id=str(path))
        return names

    def _rng_if_saved(self, path: Path) -> set[str]:
        # A run resumed with another world size finds no stream for some ranks: they keep their seed.
        meta = dcp.FileSystemReader(str(path)).read_metadata()
        mine = set(self.states["rng"].state_dict())
        return {"rng"} if all(f"rng.{k}" in meta.state_dict_metadata for k in mine) else set()

    def resume(self) -> Path | None:
        """Load the newest usable checkpoint of this run, if any (all ranks agree on which)."""
        path = find_resumable(self.dir, self.log)
        if path is None:
            return None
        self.load(path)
        return path

    def resolve_load(self, path: str | Path) -> Path:
        return resolve_load_shared(path)


def finalize_step_dir(tmp: Path, final: Path, cfg: Config, step: int) -> None:
    """Complete a checkpoint written into `tmp`: config.yaml, the COMPLETE marker with every
    file's size and digest (from the writers' side files, or computed here), the rename to
    `final`, then the `latest` pointer — in that order, so a crash at any point leaves either no
    checkpoint under `final` or a whole one."""
    (tmp / "config.yaml").write_text(dump_yaml(cfg), encoding="utf-8")
    known: dict[str, str] = {}
    for side in sorted(tmp.glob(_DIGESTS_OF_RANK.format("*"))):
        known.update(json.loads(side.read_text()))
        side.unlink()
    files = {p.name: {"bytes": p.stat().st_size, DIGEST: known.get(p.name) or file_digest(p)}
             for p in sorted(tmp.iterdir())}
    _write_durable(tmp / MARKER, json.dumps({"step": step, "digest": DIGEST, "files": files},
                                            indent=1))
    os.replace(tmp, final)
    tmp_latest = final.parent / f"{LATEST}.tmp"
    _write_durable(tmp_latest, final.name)
    os.replace(tmp_latest, final.parent / LATEST)


def _write_durable(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _locate(path: str | Path) -> Path | UserError:
    """A step directory, or the one a checkpoint directory's `latest` names (else the error)."""
    p = Path(path)
    if not p.exists():
        return UserError(f"{path}: no such checkpoint directory")
    if (p / LATEST).is_file():
        name = (p / LATEST).read_text().strip()
        p = p / name
        if not p.is_dir():
            return UserError(f"{path}/{LATEST} names '{name}', which does not exist")
    if not (p / ".metadata").is_file():
        return UserError(f"{p}: not a DCP checkpoint (no .metadata file and no '{LATEST}' file)")
    return p


def resolve_load_path(path: str | Path) -> Path:
    """A step directory, or a checkpoint directory whose `latest` names one; it must be complete
    and every file must match its digest (read in this process)."""
    return _complete(_locate(path), check_complete)


def resolve_load_shared(path: str | Path) -> Path:
    """`resolve_load_path` on every rank of the running process group (or in one process): the
    ranks share the hashing and agree on the answer. Collective."""
    return _complete(_broadcast(_locate(path) if _rank() == 0 else None), _check_shared)


def _complete(located: Path | UserError, check: Callable[[Path], str | None]) -> Path:
    if isinstance(located, UserError):
        raise located
    reason = check(located)
    if reason:
        raise UserError(f"{located}: incomplete checkpoint: {reason}")
    return located


@contextlib.contextmanager
def single_process():
    """Reading or writing a checkpoint in one process on purpose (generation, conversion): DCP's
    reminder that no process group exists is noise there."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield
