"""Reading and writing DCP checkpoints offline (one process, no process group), tensor by tensor.

Reading: every parallel layout stores the same logical keys with their global shapes, so asking
DCP for a key into a full-size plain tensor gathers it from however many shard files hold it.
We ask for one group of keys at a time (a layer), never the whole checkpoint.

Writing: `dcp.save` wants the whole state dict in memory. We hand it meta-device placeholders with
the right shapes and dtypes, and a planner whose `resolve_data` (DCP's documented extension point)
produces each real tensor only when the writer reaches it. DCP's writer keeps every tensor of the
file it is writing until that file is done, so files are cut at `FILE_BYTES`: the writer then holds
at most one file's worth (or one tensor larger than that) at a time.
"""
from __future__ import annotations

import queue
import shutil
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint._nested_dict import unflatten_state_dict
from torch.distributed.checkpoint.default_planner import DefaultSavePlanner
from torch.distributed.checkpoint.filesystem import DEFAULT_SUFFIX
from torch.distributed.checkpoint.metadata import Metadata, TensorStorageMetadata
from torch.distributed.checkpoint.planner import WriteItemType

from hyperclova.config import Config, load_config
from hyperclova.errors import UserError
from hyperclova.train.checkpoint import finalize_step_dir, single_process, step_dir_name
from hyperclova.train.checkpoint import resolve_load_path as resolve_step_dir  # noqa: F401 (for convert/)

CONFIG_FILE = "config.yaml"
FILE_BYTES = 256 * 2**20  # at most this much tensor data per written file (unless one tensor is larger)


# --- locating and reading ----------------------------------------------------------------------


def read_run_config(step_dir: Path, config_path: str | Path | None = None,
                    overrides: list[str] | None = None) -> Config:
    """The resolved config saved with the checkpoint (or one given explicitly), plus overrides."""
    path = Path(config_path) if config_path else step_dir / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{step_dir}: no {CONFIG_FILE} next to the checkpoint; pass --config FILE "
                        "with the model section it was trained with")
    return load_config(path, overrides)


class CheckpointReader:
    """Metadata of one DCP step directory, and loading chosen keys as full (unsharded) tensors."""

    def __init__(self, step_dir: Path):
        self.path = step_dir
        self.metadata: Metadata = dcp.FileSystemReader(str(step_dir)).read_metadata()

    @property
    def keys(self) -> list[str]:
        return list(self.metadata.state_dict_metadata)

    def tensor_meta(self, key: str) -> TensorStorageMetadata | None:
        md = self.metadata.state_dict_metadata.get(key)
        return md if isinstance(md, TensorStorageMetadata) else None

    def group_keys(self, group: str) -> list[str]:
        prefix = group + "."
        return [k for k in self.keys if k.startswith(prefix)]

    def load(self, keys: list[str]) -> dict[str, Any]:
        """Full tensors (or small objects) for `keys`, which are flattened DCP keys."""
        sd: dict[str, Any] = {}
        for key in keys:
            md = self.metadata.state_dict_metadata[key]
            if isinstance(md, TensorStorageMetadata):
                sd[key] = torch.empty(md.size, dtype=md.properties.dtype)
            else:
                sd[key] = None  # a pickled object: DCP replaces the placeholder
        if sd:
            with single_process():
                dcp.load(sd, storage_reader=dcp.FileSystemReader(str(self.path)), no_dist=True)
        return sd

    def nesting(self) -> dict:
        """How flattened keys map back to the nested state dict the trainer saved."""
        return self.metadata.planner_data or {k: (k,) for k in self.keys}


# --- writing -------------------------------------------------------------------------------------


class LazySavePlanner(DefaultSavePlanner):
    """Meta-device tensors in the state dict are produced on demand by `producers[flat_key]()`."""

    def __init__(self, producers: dict[str, Callable[[], torch.Tensor]]):
        super().__init__()
        self.producers = producers

    def lookup_object(self, index) -> Any:
        obj = super().lookup_object(index)
        if isinstance(obj, torch.Tensor) and obj.is_meta:
            real = self.producers[index.fqn]()
            if real.shape != obj.shape or real.dtype != obj.dtype:
                raise RuntimeError(f"producer for '{index.fqn}' gave {tuple(real.shape)} {real.dtype}, "
                                   f"declared {tuple(obj.shape)} {obj.dtype}")
            return real
        return obj


class BoundedFileWriter(dcp.FileSystemWriter):
    """FileSystemWriter that starts a new file whenever the current one reaches `file_bytes`.

    The stock writer makes one file per rank (holding all of that rank's tensors in memory until
    the file is written) or one file per tensor (thousands of files, each fsync'ed)."""

    def __init__(self, path: str | Path, file_bytes: int = FILE_BYTES):
        super().__init__(str(path), single_file_per_rank=True)
        self.file_bytes = file_bytes

    def write_data(self, plan, planner):
        files: queue.Queue = queue.Queue()
        for i, bucket in enumerate(_buckets(plan.items, self.file_bytes)):
            name = f"{plan.storage_data.prefix}{i}{DEFAULT_SUFFIX}"
            files.put((self.fs.concat_path(self.path, name), name, bucket))
        return self._write_data(planner, files)


def _buckets(items: list, limit: int) -> list[list]:
    """Consecutive items (so a layer stays together) cut into runs of at most `limit` bytes."""
    out: list[list] = [[]]
    size = 0
    for item in items:
        n = 0 if item.type == WriteItemType.BYTE_IO else item.tensor_data.size.numel() * \
            torch.empty((), dtype=item.tensor_data.properties.dtype).element_size()
        if out[-1] and size + n > limit:
            out.append([])
            size = 0
        out[-1].append(item)
        size += n
    return out


def save_lazy(out_dir: Path, state_dict: dict, producers: dict[str, Callable[[], torch.Tensor]],
              file_bytes: int = FILE_BYTES) -> None:
    """DCP-save a nested state dict whose meta tensors are produced lazily, in bounded files."""
    writer = BoundedFileWriter(out_dir, file_bytes)
    with single_process():
        dcp.save(state_dict, storage_writer=writer, planner=LazySavePlanner(producers), no_dist=True)


def nested(flat: dict[str, Any], mapping: dict) -> dict:
    """Nest a flat {dcp_key: value} dict the way the original state dict was nested."""
    return unflatten_state_dict(flat, {k: mapping[k] for k in flat})


def check_new_checkpoint_dir(out: Path) -> None:
    """`from-hf` and `reshard` write a new checkpoint directory. Into a run's existing one they
    would repoint `latest` at their (older) step: the next run would resume from it and its
    pruning delete the newer checkpoints. So the target must be new or empty."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "is a file" if not out.is_dir() else \
            "is not empty (" + ", ".join(sorted(p.name for p in out.iterdir())[:4]) + ")"
        raise UserError(f"output directory {out} {what}; write the converted checkpoint into a new "
                        "or empty directory, then point the run at it (logging.run_dir, "
                        "checkpoint.dir or checkpoint.load)")


def write_step(out: Path, step: int, cfg: Config, state_dict: dict,
               producers: dict[str, Callable[[], torch.Tensor]]) -> Path:
    """Write `out/step_XXXXXXXX` in the trainer's layout (DCP + config.yaml + COMPLETE), then
    point `out/latest` at it. `out` must be new or empty; written under a temporary name and
    renamed, like the trainer does, and removed again if the conversion fails."""
    check_new_checkpoint_dir(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    final = out / step_dir_name(step)
    tmp = out / f"{final.name}.tmp"
    tmp.mkdir()
    try:
        save_lazy(tmp, state_dict, producers)
        finalize_step_dir(tmp, final, cfg, step)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return final
