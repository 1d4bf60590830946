"""The cleaning pipeline: plan -> process (per task) -> dedup (global) -> finalize (per task) -> report.

Layout of an output directory:

    plan.json                        tasks (byte ranges of inputs), recipe fingerprint
    work/process/00003.jsonl|.hash.npy|.sig.npy|.done    first pass of task 3
    work/dedup/00003.npy, work/dedup.done                 global verdicts per task
    data/shard_00003.jsonl, work/finalize/00003.done      cleaned output of task 3
    rejects/<reason>/shard_00003.jsonl                    dropped documents (with --rejects)
    report.json, report.txt

Every file is written under a temporary name and renamed when complete, and a `.done` marker (holding
that task's statistics) is written last, so an interrupted run resumes where it stopped and never
leaves partial output under a final name. Output depends only on the input, the recipe and the task
size, not on the executor or the number of workers. Inputs are read by the one reader
(`hyperclova.data.reader`): a rerun whose inputs changed since planning is refused, and
`overwrite` starts the run over.
"""
from __future__ import annotations

import json
import resource
import shutil
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np

from hyperclova.corpus import executors
from hyperclova.corpus.dedup import MinHasher, band_keys, exact_hash, find_duplicates
from hyperclova.corpus.jsonl import AtomicWriter, write_json_atomic
from hyperclova.corpus.recipe import Recipe, load_recipe
from hyperclova.corpus.report import TaskStats, merge_stats, write_report
from hyperclova.data.reader import (Range, ReadStats, changed_inputs, check_json_keys, expand_inputs,
                                    input_state, iter_records, plan_ranges)
from hyperclova.errors import UserError
from hyperclova.paths import make_dir

STAGES = ["plan", "process", "dedup", "finalize", "report"]
# What a run writes into its output directory (and --overwrite removes; nothing else is touched).
_RUN_ENTRIES = ("plan.json", "work", "data", "rejects", "report.json", "report.txt")


def _task_name(i: int) -> str:
    return f"{i:05d}"


def make_plan(inputs: list[str], out_dir: Path, recipe: Recipe, input_format: str = "auto",
              json_key: str = "text", overwrite: bool = False) -> list[Range]:
    """Write plan.json, or check that an existing one matches (then a rerun resumes)."""
    files = expand_inputs(inputs, input_format)
    plan_path = out_dir / "plan.json"
    key = json.loads(json.dumps({"files": [asdict(f) for f in files], "recipe": recipe.fingerprint,
                                 "task_mb": recipe.task_mb, "json_key": json_key}))
    if overwrite:
        for name in _RUN_ENTRIES:
            p = out_dir / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    if plan_path.exists():
        plan = json.loads(plan_path.read_text(encoding="utf-8"))
        if plan["key"] != key:
            raise UserError(f"{out_dir} holds a run with other inputs or another recipe; pass --overwrite "
                            "to start over, or use a new --output directory")
        _check_inputs(plan, out_dir)
        return [Range.from_json(r) for r in plan["tasks"]]
    tasks = plan_ranges(files, max(1, int(recipe.task_mb * 1e6)))
    write_json_atomic(plan_path, {"key": key, "inputs": input_state(files), "tasks": [r.to_json() for r in tasks]})
    return tasks


def _check_inputs(plan: dict, out_dir: Path) -> None:
    changed = changed_inputs(plan["inputs"])
    if changed:
        raise UserError(f"the inputs changed since {out_dir} was planned ({'; '.join(changed[:5])}): its "
                        "output would not match them; pass --overwrite to start over")


def load_plan(out_dir: Path, recipe: Recipe) -> tuple[list[Range], str]:
    """The tasks of a planned run and its json key; every stage must run with the recipe the run
    was planned with (SLURM submits each stage separately, so a changed --recipe would mix two
    recipes), on unchanged inputs."""
    plan_path = out_dir / "plan.json"
    if not plan_path.exists():
        raise UserError(f"{plan_path} not found: run the 'plan' stage first")
    plan = json.loads(plan_path.read_text(encoding="utf-8"))
    if plan["key"]["recipe"] != recipe.fingerprint:
        raise UserError(f"{out_dir} was planned with another recipe; pass the same --recipe to "
                        "every stage (or use a new --output directory)")
    _check_inputs(plan, out_dir)
    return [Range.from_json(r) for r in plan["tasks"]], plan["key"]["json_key"]


def _as_text_key(rec: dict, key: str) -> dict:
    """The record with fields `key` and "text" swapped (field order kept), so the steps always clean
    rec["text"]; applying it twice gives the record back."""
    if key == "text":
        return rec
    return {("text" if k == key else key if k == "text" else k): v for k, v in rec.items()}


def _apply_steps(steps, rec, stats: TaskStats, rejects: dict, with_rejects: bool) -> dict | None:
    for step in steps:
        size_in = len(rec["text"].encode("utf-8"))
        rec, verdict = step(rec, stats.pii)
        if verdict is not None and step.action == "flag":
            rec = {**rec, "flags": rec.get("flags", []) + [verdict[0]]}
            stats.flags[verdict[0]] += 1
            verdict = None
        stats.step(step.name, size_in, None if verdict else len(rec["text"].encode("utf-8")))
        if verdict is not None:
            stats.reject(rec, verdict[0], size_in)
            if with_rejects:
                rejects.setdefault(verdict[0], []).append({**rec, "reject_reason": verdict[0],
                                                           "reject_detail": verdict[1]})
            return None
    return rec


def _write_rejects(out_dir: Path, name: str, rejects: dict, json_key: str) -> None:
    for reason, recs in rejects.items():
        w = AtomicWriter(out_dir / "rejects" / reason / f"shard_{name}.jsonl")
        for r in recs:
            w.write(_as_text_key(r, json_key))
        w.commit()


def _remove_stale_temporaries(out_dir: Path, name: str) -> None:
    """Temporaries an interrupted attempt at this task left behind (never final files)."""
    for pattern in (f"work/*/{name}.*tmp*", f"data/shard_{name}.jsonl.tmp*", f"rejects/*/shard_{name}.jsonl.tmp*"):
        for p in out_dir.glob(pattern):
            p.unlink(missing_ok=True)


def process_task(out_dir: Path, recipe: Recipe, tasks: list, json_key: str, strict: bool, with_rejects: bool,
                 task_id: int) -> None:
    """First pass of one task: read, per-document steps, hashes and signatures for dedup."""
    task = tasks[task_id]
    name, work = _task_name(task_id), out_dir / "work" / "process"
    if (work / f"{name}.done").exists():
        return
    _remove_stale_temporaries(out_dir, name)
    stats, rejects = TaskStats(), {}
    hasher = MinHasher(recipe.near_dedup) if recipe.near_dedup else None
    hashes, sigs = [], []
    writer = AtomicWriter(work / f"{name}.jsonl")
    for line in iter_records([task], json_keys=(json_key,), strict=strict, stats=stats.read):
        rec = _as_text_key(line.record, json_key) if line.record else {"text": line.texts[0]}
        stats.doc_in(rec)
        rec = _apply_steps(recipe.before, rec, stats, rejects, with_rejects)
        if rec is None:
            continue
        writer.write(rec)
        hashes.append(exact_hash(rec["text"]))
        if hasher:
            sigs.append(hasher.signature(rec["text"]))
    writer.commit()
    np.save(work / f"{name}.hash.tmp.npy", np.array(hashes, dtype=np.uint64))
    (work / f"{name}.hash.tmp.npy").replace(work / f"{name}.hash.npy")
    if hasher:
        arr = np.array(sigs, dtype=np.uint32).reshape(len(sigs), recipe.near_dedup.num_perm)
        np.save(work / f"{name}.sig.tmp.npy", arr)
        (work / f"{name}.sig.tmp.npy").replace(work / f"{name}.sig.npy")
        np.save(work / f"{name}.bands.tmp.npy", band_keys(arr, recipe.near_dedup))
        (work / f"{name}.bands.tmp.npy").replace(work / f"{name}.bands.npy")
    _write_rejects(out_dir, name, rejects, json_key)
    write_json_atomic(work / f"{name}.done", stats.to_json())


def dedup_stage(out_dir: Path, recipe: Recipe) -> dict:
    """Global exact + near dedup over all tasks' hashes and signatures (never the texts)."""
    tasks, _ = load_plan(out_dir, recipe)
    work = out_dir / "work"
    if (work / "dedup.done").exists():
        return json.loads((work / "dedup.done").read_text(encoding="utf-8"))
    missing = [i for i in range(len(tasks)) if not (work / "process" / f"{_task_name(i)}.done").exists()]
    if missing:
        raise UserError(f"dedup needs every task processed; missing: {missing[:10]}")
    t0 = time.perf_counter()
    names = [_task_name(i) for i in range(len(tasks))]
    stats: dict = {"documents": 0, "exact_dup": 0, "near_dup": 0}
    if recipe.exact_dedup or recipe.near_dedup:
        hash_files = [work / "process" / f"{n}.hash.npy" for n in names]
        sig_files = [work / "process" / f"{n}.sig.npy" for n in names] if recipe.near_dedup else None
        band_files = [work / "process" / f"{n}.bands.npy" for n in names] if recipe.near_dedup else None
        verdicts, dup_of, stats = find_duplicates(hash_files, sig_files, recipe.near_dedup,
                                                  recipe.exact_dedup, band_files)
        (work / "dedup").mkdir(parents=True, exist_ok=True)
        offsets = np.cumsum([0] + [len(v) for v in verdicts])
        np.save(work / "dedup" / "offsets.tmp.npy", offsets)
        (work / "dedup" / "offsets.tmp.npy").replace(work / "dedup" / "offsets.npy")
        for n, v, d in zip(names, verdicts, dup_of):
            np.save(work / "dedup" / f"{n}.tmp.npy", np.stack([v.astype(np.int64), d]))
            (work / "dedup" / f"{n}.tmp.npy").replace(work / "dedup" / f"{n}.npy")
    if recipe.near_dedup:
        cfg = recipe.near_dedup
        stats.update(unit=cfg.unit, ngram=cfg.ngram, bands=cfg.bands, rows=cfg.rows,
                     lsh_threshold=round(cfg.lsh_threshold, 4), verify_threshold=round(cfg.effective_threshold, 4))
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    stats["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    write_json_atomic(work / "dedup.done", stats)
    return stats


def _kept_copy(global_index: int, offsets: np.ndarray) -> str:
    """Where the kept copy of a duplicate is: its task and line in the first-pass output."""
    task = int(np.searchsorted(offsets, global_index, side="right") - 1)
    line = int(global_index - offsets[task]) + 1
    return f"duplicate of the document kept from work/process/{_task_name(task)}.jsonl line {line}"


def finalize_task(out_dir: Path, recipe: Recipe, tasks: list, json_key: str, strict: bool, with_rejects: bool,
                  task_id: int) -> None:
    """Final pass of one task: drop duplicates, run the steps after dedup, write the shard."""
    name, work = _task_name(task_id), out_dir / "work"
    if (work / "finalize" / f"{name}.done").exists():
        return
    # Without the dedup verdicts every duplicate would be kept, and the .done marker would make
    # that permanent: refuse rather than finish early.
    if not (work / "dedup.done").exists():
        raise UserError("finalize needs the dedup stage finished: run --stage dedup first")
    _remove_stale_temporaries(out_dir, name)
    stats, rejects = TaskStats(), {}
    verdict_file = work / "dedup" / f"{name}.npy"
    verdicts = np.load(verdict_file) if verdict_file.exists() else None
    offsets = np.load(work / "dedup" / "offsets.npy") if verdicts is not None else None
    writer = AtomicWriter(out_dir / "data" / f"shard_{name}.jsonl")
    with open(work / "process" / f"{name}.jsonl", encoding="utf-8") as f:
        for i, line in enumerate(f):
            rec = json.loads(line)
            verdict = int(verdicts[0, i]) if verdicts is not None else 0
            size = len(rec["text"].encode("utf-8"))
            if recipe.exact_dedup:
                stats.step("exact_dedup", size, None if verdict == 1 else size)
            if recipe.near_dedup and verdict != 1:
                stats.step("near_dedup", size, None if verdict == 2 else size)
            if verdict:
                reason = "exact_dup" if verdict == 1 else "near_dup"
                stats.reject(rec, reason, size)
                if with_rejects:
                    rejects.setdefault(reason, []).append(
                        {**rec, "reject_reason": reason, "reject_detail": _kept_copy(verdicts[1, i], offsets)})
                continue
            rec = _apply_steps(recipe.after, rec, stats, rejects, with_rejects)
            if rec is None:
                continue
            stats.kept(rec, writer.write(_as_text_key(rec, json_key)))
    writer.commit()
    _write_rejects(out_dir, name, rejects, json_key)
    write_json_atomic(work / "finalize" / f"{name}.done", stats.to_json())


def report_stage(out_dir: Path, recipe: Recipe) -> dict:
    tasks, _ = load_plan(out_dir, recipe)
    work = out_dir / "work"
    parts = []
    read, lines_before = ReadStats(), {}
    for i, task in enumerate(tasks):
        for stage in ("process", "finalize"):
            marker = work / stage / f"{_task_name(i)}.done"
            if not marker.exists():
                raise UserError(f"report needs every task finished; {marker} is missing")
            parts.append(json.loads(marker.read_text(encoding="utf-8")))
        # Bad-line locations count from the task's start: shift by the file's lines before it.
        part = ReadStats.from_json(parts[-2]["read"])
        offset = lines_before.get(task.file.path, 0)
        read.merge(part, line_offset=offset)
        lines_before[task.file.path] = offset + part.lines
    dedup = json.loads((work / "dedup.done").read_text(encoding="utf-8"))
    report = merge_stats(parts, recipe.step_names)
    report["input"] = read.to_json()
    report["dedup"] = dedup
    report["tasks"] = len(tasks)
    write_report(out_dir, report)
    return report


def run(inputs: list[str], out_dir: str | Path, recipe_path: str | None = None, executor: str = "local",
        workers: int = 1, stage: str = "all", rejects: bool = False, input_format: str = "auto",
        json_keys: tuple = ("text",), strict: bool = False, overwrite: bool = False) -> dict | None:
    """Run one stage (or all) of the pipeline; returns the report when the report stage ran."""
    out_dir = Path(out_dir)
    # Loaded once, here, and handed to every task: workers (Ray, other hosts) never re-read the
    # recipe or the environment, so they all use this process's PII salt.
    recipe = load_recipe(recipe_path)
    if stage not in STAGES + ["all"]:
        raise UserError(f"unknown stage {stage!r}; choose from {STAGES + ['all']}")
    if executor == "slurm" and stage == "all":
        raise UserError("--executor slurm runs one stage per job: use launch/clean_corpus.sbatch or --stage")
    keys = check_json_keys(json_keys)
    if len(keys) != 1:
        raise UserError(f"clean_corpus cleans one text field: give one --json-keys name, got {list(keys)}")
    make_dir(out_dir, "--output")
    stages = STAGES if stage == "all" else [stage]
    report = None
    with executors.session(executor, workers):
        for s in stages:
            if s == "plan":
                if not inputs:
                    raise UserError("--input is required for the plan stage")
                make_plan(inputs, out_dir, recipe, input_format, keys[0], overwrite)
            elif s in ("process", "finalize"):
                fn = process_task if s == "process" else finalize_task
                tasks, json_key = load_plan(out_dir, recipe)
                executors.run_tasks(partial(fn, out_dir, recipe, tasks, json_key, strict, rejects),
                                    list(range(len(tasks))), executor, workers)
            elif s == "dedup":
                dedup_stage(out_dir, recipe)
            else:
                report = report_stage(out_dir, recipe)
    return report
