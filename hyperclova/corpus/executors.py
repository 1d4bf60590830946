"""Run a stage's tasks: in this process or a local pool, one SLURM array element, or on Ray.

A task function takes a task id and leaves a completion marker; the executors only decide where it
runs. Because tasks skip themselves when their marker exists, every executor can resume a run.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
from typing import Callable

from hyperclova.errors import UserError
from hyperclova.processes import die_with_parent

EXECUTORS = ("local", "slurm", "ray")


def slurm_task_ids(task_ids: list[int], env=os.environ) -> list[int]:
    """The tasks of this SLURM array element: ids[k::n] for element k of n."""
    if "SLURM_ARRAY_TASK_ID" not in env:
        raise UserError("--executor slurm needs SLURM_ARRAY_TASK_ID (run it as a job array: sbatch --array)")
    try:
        k = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", 0))
        n = int(env.get("SLURM_ARRAY_TASK_COUNT", 0)) or len(task_ids)
    except ValueError as e:
        raise UserError(f"bad SLURM_ARRAY_* environment variable: {e}")
    if not 0 <= k < n:
        raise UserError(f"SLURM array index {k} outside 0..{n - 1}")
    return task_ids[k::n]


def run_tasks(fn: Callable[[int], None], task_ids: list[int], executor: str = "local",
              workers: int = 1) -> None:
    if executor not in EXECUTORS:
        raise UserError(f"unknown executor {executor!r}; choose from {EXECUTORS}")
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    if executor == "slurm":
        for i in slurm_task_ids(task_ids):
            fn(i)
    elif executor == "ray":
        _run_ray(fn, task_ids, workers)
    elif workers == 1 or len(task_ids) <= 1:
        for i in task_ids:
            fn(i)
    else:
        # fork would copy whatever the caller imported (torch in tests); spawn starts clean workers,
        # which end with this process even when it is killed outright.
        with mp.get_context("spawn").Pool(min(workers, len(task_ids)), initializer=die_with_parent) as pool:
            for _ in pool.imap_unordered(fn, task_ids):
                pass


@contextlib.contextmanager
def session(executor: str, workers: int):
    """Keep one Ray runtime for all stages of a run (starting one costs seconds); no-op otherwise."""
    if executor != "ray":
        yield
        return
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:  # join a cluster named by RAY_ADDRESS, else start a local one with `workers` CPUs
        if os.environ.get("RAY_ADDRESS"):
            ray.init(address=os.environ["RAY_ADDRESS"])
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs the [ray] extra: pip install 'hyperclova[ray]'")
    return ray


def _call(fn: Callable[[int], None], task_id: int) -> None:
    fn(task_id)


def _run_ray(fn: Callable[[int], None], task_ids: list[int], workers: int) -> None:
    ray = _import_ray()
    with session("ray", workers):  # joins the run's runtime when there is one
        remote = ray.remote(num_cpus=1)(_call)
        try:
            ray.get([remote.remote(fn, i) for i in task_ids])
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, UserError):  # the user's mistake, not a crash: no remote traceback
                raise UserError(str(e.cause)) from None
            raise
