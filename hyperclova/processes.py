"""Process control shared by the tools that fan out to worker processes.

- `die_with_parent()`: a worker ends when the process that started it ends, even by SIGKILL, so
  a killed job never leaves orphans encoding into the void.
- `terminate_as_interrupt()`: SIGTERM (what `kill`, SLURM and container runtimes send) unwinds the
  main process like Ctrl-C, so the same cleanup runs: temporaries removed, workers stopped.
- `clamp_workers()`: more workers than usable cores only adds contention; say so and use fewer.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Call first thing in a worker process: it is killed when its parent exits."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before prctl took effect
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="watch-parent").start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be so that the same cleanup runs."""


@contextlib.contextmanager
def terminate_as_interrupt():
    """While active (main thread only), SIGTERM raises `Terminated` (a KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity: taskset, cgroups, SLURM's allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def clamp_workers(workers: int, flag: str = "--workers") -> int:
    """`workers`, or the usable core count when it is smaller (with a note on stderr)."""
    cores = usable_cores()
    if workers > cores:
        print(f"note: {flag} {workers} is more than the {cores} usable cores; using {cores}", file=sys.stderr)
        return cores
    return workers
