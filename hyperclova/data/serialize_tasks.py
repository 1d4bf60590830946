"""The serializer as resumable tasks, on one machine, a SLURM array or Ray: plan, encode, merge.

    stats = preprocess_tasks(["raw/"], "data/corpus", "tok/", executor="ray", workers=32)

- plan: cut the inputs into tasks (byte ranges of about `task_bytes` ending at line ends; a
  compressed file is one task) and write WORK/plan.json with the settings and each input's size and
  modification time. Only the cut points are read, so planning a terabyte takes seconds.
- encode: each task (run by `hyperclova.corpus.executors`) writes its own shard per json key,
  WORK/NNNNN_{key}_document.bin/.idx, then its completion marker WORK/NNNNN.done (read accounting,
  bytes, seconds). A rerun skips tasks that have a marker and first removes what an interrupted
  attempt at a task left behind.
- merge: concatenate the task shards, in task order, into {prefix}_{key}_document; these are the
  bytes a one-process `preprocess` writes over the same inputs (tested). Bad-line locations are
  turned back into file:line of the input. WORK is then removed (unless `keep_tasks`).

WORK is `{output_prefix}.tasks/` unless `work_dir` says otherwise; every machine must see it.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from functools import lru_cache, partial
from pathlib import Path
from typing import Optional, Sequence

from hyperclova.corpus import executors
from hyperclova.corpus.jsonl import write_json_atomic
from hyperclova.data.indexed import merge_shards, shard_prefix, stale_temporaries
from hyperclova.data.reader import (DEFAULT_BLOCK_BYTES, Range, ReadStats, changed_inputs, expand_inputs,
                                    input_state, plan_ranges)
from hyperclova.data.records import EncodeSettings
from hyperclova.data.serialize import PreprocessStats, encode_ranges, load_settings, open_writers, prepare_outputs
from hyperclova.errors import UserError
from hyperclova.paths import make_dir
from hyperclova.tokenizer.load import tokenizer_fingerprint

STAGES = ("plan", "encode", "merge")
DEFAULT_TASK_BYTES = 256 * 2**20


def work_dir_for(output_prefix: str, work_dir: Optional[str] = None) -> Path:
    return Path(work_dir) if work_dir else Path(f"{output_prefix}.tasks")


def _task_name(i: int) -> str:
    return f"{i:05d}"


def make_plan(inputs: Sequence[str], input_format: str, output_prefix: str, tokenizer_dir: str,
              json_keys: Sequence[str], append_eod: bool, task_bytes: int, work: Path, overwrite: bool) -> dict:
    """Write WORK/plan.json, or check that the one there is for these inputs and settings (resume)."""
    if task_bytes < 1:
        raise UserError(f"--task-mb must be positive, got {task_bytes / 2**20:g}")
    files = expand_inputs(inputs, input_format)
    settings, tokenizer = load_settings(tokenizer_dir, json_keys, append_eod, files)
    prepare_outputs(output_prefix, settings.json_keys, overwrite)
    key = json.loads(json.dumps({  # as it reads back from plan.json
        "output_prefix": str(output_prefix), "settings": asdict(settings),
        "tokenizer": tokenizer_fingerprint(tokenizer_dir), "task_bytes": task_bytes,
        "files": [asdict(f) for f in files]}))
    plan_path = work / "plan.json"
    if overwrite and work.exists():
        shutil.rmtree(work)
    if plan_path.exists():
        plan = json.loads(plan_path.read_text(encoding="utf-8"))
        changed = changed_inputs(plan["inputs"])
        if changed:
            raise UserError(f"the inputs changed since {work} was planned ({'; '.join(changed[:5])}); "
                            "pass --overwrite to start over")
        if plan["key"] != key:
            differs = sorted(k for k in key if plan["key"].get(k) != key[k])
            raise UserError(f"{work} holds tasks planned with other {', '.join(differs)}; "
                            "pass --overwrite to start over (or another --work-dir)")
        return plan
    make_dir(work, "--work-dir")
    ranges = plan_ranges(files, task_bytes)
    if not ranges:
        raise UserError("the inputs are empty: nothing to serialize")
    plan = {"key": key, "inputs": input_state(files), "vocab_size": tokenizer.vocab_size,
            "ranges": [r.to_json() for r in ranges]}
    write_json_atomic(plan_path, plan)
    return plan


def load_plan(work: Path) -> dict:
    plan_path = work / "plan.json"
    if not plan_path.exists():
        raise UserError(f"{plan_path} not found: run --stage plan first (with the same --output-prefix "
                        "and --work-dir)")
    return json.loads(plan_path.read_text(encoding="utf-8"))


@lru_cache(maxsize=4)
def _cached_plan(work: str, mtime_ns: int) -> dict:
    return load_plan(Path(work))


def encode_task(work: str, strict: bool, block_bytes: int, task_id: int) -> None:
    """Encode one task into its own shards, then leave its marker; a no-op when the marker exists."""
    work_path = Path(work)
    name = _task_name(task_id)
    marker = work_path / f"{name}.done"
    if marker.exists():
        return
    for pattern in (f"{name}_*.tmp-*", f"{name}.done.tmp*"):  # an interrupted attempt at this task
        for stale in work_path.glob(pattern):
            stale.unlink(missing_ok=True)
    plan = _cached_plan(work, (work_path / "plan.json").stat().st_mtime_ns)
    r = Range.from_json(plan["ranges"][task_id])
    changed = changed_inputs([s for s in plan["inputs"] if s[0] == r.file.path])
    if changed:
        raise UserError(f"the inputs changed since {work} was planned ({'; '.join(changed)}); "
                        "rerun with --overwrite to start over")
    settings = EncodeSettings(**{**plan["key"]["settings"], "json_keys": tuple(plan["key"]["settings"]["json_keys"])})
    outputs = {k: str(work_path / shard_prefix(name, k)) for k in settings.json_keys}
    stats = PreprocessStats(outputs=outputs, dtype=settings.dtype)
    writers = open_writers(outputs, settings, plan["vocab_size"], plan["key"]["tokenizer"])
    t0 = time.perf_counter()
    try:
        encode_ranges([r], writers, settings, 1, stats, strict, block_bytes)
        for writer in writers.values():
            writer.commit()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    write_json_atomic(marker, {"read": stats.read.to_json(), "bytes": stats.bytes_read,
                               "documents": stats.documents_written, "seconds": time.perf_counter() - t0})


def merge_tasks(work: Path, plan: dict, keep_tasks: bool = False) -> PreprocessStats:
    """Concatenate every task's shards into the final ones (see the module docstring)."""
    ranges = [Range.from_json(r) for r in plan["ranges"]]
    missing = [i for i in range(len(ranges)) if not (work / f"{_task_name(i)}.done").exists()]
    if missing:
        raise UserError(f"merge needs every task encoded; {len(missing)} of {len(ranges)} are not, "
                        f"e.g. {missing[:10]}: rerun the encode stage")
    settings = plan["key"]["settings"]
    output_prefix = plan["key"]["output_prefix"]
    outputs = {k: shard_prefix(output_prefix, k) for k in settings["json_keys"]}
    stats = PreprocessStats(outputs=outputs, dtype=settings["dtype"], files=len(plan["inputs"]), tasks=len(ranges))
    lines_before: dict[str, int] = {}
    nonempty = []
    for i, r in enumerate(ranges):
        done = json.loads((work / f"{_task_name(i)}.done").read_text(encoding="utf-8"))
        part = ReadStats.from_json(done["read"])
        offset = lines_before.get(r.file.path, 0)  # lines of the file's earlier tasks
        stats.read.merge(part, line_offset=offset)
        lines_before[r.file.path] = offset + part.lines
        stats.bytes_read += done["bytes"]
        if done["documents"]:
            nonempty.append(i)
    if stats.documents_written == 0:
        raise UserError(f"no documents written, nothing to serialize:\n{stats.summary()}")
    for key, final in outputs.items():
        for stale in stale_temporaries(final):  # of a merge killed earlier
            Path(stale).unlink(missing_ok=True)
        meta = merge_shards([str(work / shard_prefix(_task_name(i), key)) for i in nonempty], final)
        stats.tokens[key] = meta.tokens
    if not keep_tasks:
        shutil.rmtree(work)
    return stats


def preprocess_tasks(
    inputs: Sequence[str],
    output_prefix: str,
    tokenizer_dir: Optional[str],
    json_keys: Sequence[str] = ("text",),
    executor: str = "local",
    workers: int = 1,
    append_eod: bool = False,
    strict: bool = False,
    input_format: str = "auto",
    task_bytes: int = DEFAULT_TASK_BYTES,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    work_dir: Optional[str] = None,
    stage: str = "all",
    overwrite: bool = False,
    keep_tasks: bool = False,
) -> Optional[PreprocessStats]:
    """Run one stage (or all) of the task-based serializer; returns the stats after a merge."""
    if stage not in STAGES + ("all",):
        raise UserError(f"unknown stage {stage!r}; choose from {', '.join(STAGES + ('all',))}")
    if executor not in executors.EXECUTORS:
        raise UserError(f"unknown executor {executor!r}; choose from {executors.EXECUTORS}")
    if executor == "slurm" and stage == "all":
        raise UserError("--executor slurm runs one stage per job: use launch/preprocess_data.sbatch or --stage")
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    work = work_dir_for(output_prefix, work_dir)
    start = time.perf_counter()
    if stage in ("plan", "all"):
        if not inputs:
            raise UserError("--input is required for the plan stage")
        if not tokenizer_dir:
            raise UserError("--tokenizer is required for the plan stage")
        plan = make_plan(inputs, input_format, output_prefix, tokenizer_dir, json_keys, append_eod, task_bytes,
                         work, overwrite)
    else:
        plan = load_plan(work)
        if plan["key"]["output_prefix"] != str(output_prefix):
            raise UserError(f"{work} holds tasks for --output-prefix {plan['key']['output_prefix']}, "
                            f"not {output_prefix}")
    if stage in ("encode", "all"):
        ids = list(range(len(plan["ranges"])))
        fn = partial(encode_task, str(work), strict, block_bytes)
        if executor == "slurm":  # this array element's tasks, `workers` at a time on its cores
            executors.run_tasks(fn, executors.slurm_task_ids(ids), "local", workers)
        else:
            with executors.session(executor, workers):
                executors.run_tasks(fn, ids, executor, workers)
    if stage in ("merge", "all"):
        stats = merge_tasks(work, plan, keep_tasks)
        stats.seconds = time.perf_counter() - start
        return stats
    return None
