"""Checkpoints through torch.distributed.checkpoint (DCP), safe against interruption.

Layout of `checkpoint.dir`:
    step_00000100/      a DCP checkpoint (.metadata + *.distcp), config.yaml, COMPLETE
    latest              text: the name of the newest complete step directory

A checkpoint is written under a temporary name, its file sizes recorded in COMPLETE, and only then
renamed into place; `latest` is replaced atomically after that. On resume a checkpoint whose COMPLETE
marker is missing or whose files do not match it is reported and the previous one is used.
Keys are the plain model's FQNs (and FQN-keyed optimizer state), so DCP reshards a checkpoint
written in one parallel layout into any other.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.stateful import Stateful

from hyperclova.config import Config, dump_yaml
from hyperclova.errors import UserError

MARKER = "COMPLETE"
LATEST = "latest"


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


def check_complete(path: Path) -> str | None:
    """None when `path` is a complete checkpoint, else the reason it is not."""
    marker = path / MARKER
    if not marker.is_file():
        return "no COMPLETE marker (the save was interrupted)"
    try:
        sizes = json.loads(marker.read_text())["files"]
    except (ValueError, KeyError):
        return "unreadable COMPLETE marker"
    for name, size in sizes.items():
        f = path / name
        if not f.is_file():
            return f"missing file {name}"
        if f.stat().st_size != size:
            return f"file {name} has {f.stat().st_size} bytes, expected {size}"
    return None


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
    """The newest complete checkpoint; incomplete or corrupt ones are reported and skipped."""
    for path in list_checkpoints(ckpt_dir):
        reason = check_complete(path) if path.is_dir() else "directory is missing"
        if reason is None:
            return path
        log(f"checkpoint {path} is unusable: {reason}; trying the previous one")
    return None


def saved_groups(path: Path) -> set[str]:
    """Top-level groups (model, optim, train, rng) present in a DCP checkpoint."""
    meta = dcp.FileSystemReader(str(path)).read_metadata()
    return {key.split(".", 1)[0] for key in meta.state_dict_metadata}


class CheckpointManager:
    def __init__(self, cfg: Config, states: dict[str, Stateful], log=print):
        self.cfg = cfg
        self.dir = cfg.checkpoint_dir
        self.states = states
        self.log = log

    def save(self, step: int) -> Path:
        final = self.dir / step_dir_name(step)
        tmp = self.dir / f"{final.name}.tmp"
        if _rank() == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        _barrier()
        dcp.save(self.states, checkpoint_id=str(tmp))
        _barrier()
        if _rank() == 0:
            if final.exists():
                shutil.rmtree(final)
            finalize_step_dir(tmp, final, self.cfg, step)
            self._prune()
        _barrier()
        return final

    def _prune(self) -> None:
        complete = [p for p in list_checkpoints(self.dir) if check_complete(p) is None]
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
        path = find_resumable(self.dir, self.log) if _rank() == 0 else None
        path = _broadcast(str(path) if path else None)
        if path is None:
            return None
        self.load(Path(path))
        return Path(path)


def finalize_step_dir(tmp: Path, final: Path, cfg: Config, step: int) -> None:
    """Complete a checkpoint written into `tmp`: config.yaml, the COMPLETE marker with every
    file's size, the rename to `final`, then the `latest` pointer — in that order, so a crash at
    any point leaves either no checkpoint under `final` or a whole one."""
    (tmp / "config.yaml").write_text(dump_yaml(cfg), encoding="utf-8")
    sizes = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
    (tmp / MARKER).write_text(json.dumps({"step": step, "files": sizes}, indent=1))
    os.replace(tmp, final)
    _write_atomic(final.parent / LATEST, final.name)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def resolve_load_path(path: str | Path) -> Path:
    """A step directory, or a checkpoint directory whose `latest` names one; must be complete."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{path}: no such checkpoint directory")
    if (p / LATEST).is_file():
        name = (p / LATEST).read_text().strip()
        p = p / name
        if not p.is_dir():
            raise UserError(f"{path}/{LATEST} names '{name}', which does not exist")
    if not (p / ".metadata").is_file():
        raise UserError(f"{p}: not a DCP checkpoint (no .metadata file and no '{LATEST}' file)")
    reason = check_complete(p)
    if reason:
        raise UserError(f"{p}: incomplete checkpoint: {reason}")
    return p


@contextlib.contextmanager
def single_process():
    """Reading or writing a checkpoint in one process on purpose (generation, conversion): DCP's
    reminder that no process group exists is noise there."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield
