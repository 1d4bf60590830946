"""One training run per checkpoint directory: an exclusive lock held by rank 0 for the whole run.

Two trainers started on one run directory would write `step_…` directories of the same names and
prune each other's checkpoints. The first run takes an advisory `flock` on `<checkpoint.dir>/.lock`
and writes who it is (pid, host, start time, SLURM job) into the file; a second run finds the lock
taken and stops with a message naming the holder.

Why `flock` and not a lock file created with O_EXCL: the kernel (or, on NFS, the lock server) drops
the lock when its holder dies, however it dies, so a crashed or killed run never leaves a stale lock
to clean up by hand; the next run takes it over and says whose it was. On NFS the Linux client
implements `flock` with whole-file POSIX locks, which every client sees; when a whole client
node dies, its locks are released when its NFSv4 lease runs out (about 90 s). Lustre supports
`flock` when mounted with `-o flock`; with `-o localflock` the lock only guards one node, and
without either (or on NFS without a lock daemon) `flock` fails: the run then goes on unguarded with
a warning (docs/checkpoints.md). `checkpoint.lock=false` switches the guard off.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from hyperclova.errors import UserError

LOCK_FILE = ".lock"
# errno values with which flock says "this filesystem cannot lock" rather than "someone holds it"
_UNSUPPORTED = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}


class DirectoryLocked(UserError):
    pass


def _me() -> dict:
    who = {"pid": os.getpid(), "host": socket.gethostname(),
           "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if os.environ.get("SLURM_JOB_ID"):
        who["slurm_job"] = os.environ["SLURM_JOB_ID"]
    return who


def _describe(who: dict | None) -> str:
    if not who:
        return "holder unknown: it has not written its name yet"
    text = f"pid {who.get('pid')} on host {who.get('host')}, started {who.get('started')}"
    if who.get("slurm_job"):
        text += f", SLURM job {who['slurm_job']}"
    return text


def _read_holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _refusal(directory: Path, who: dict | None) -> str:
    msg = (f"checkpoint directory {directory} is in use by another training run "
           f"({_describe(who)}). Two runs writing one directory would overwrite and prune each "
           f"other's checkpoints: wait for that run to end or stop it, or give this run its own "
           f"logging.run_dir or checkpoint.dir")
    if who and who.get("host") == socket.gethostname() and isinstance(who.get("pid"), int) \
            and not _pid_alive(who["pid"]):
        msg += (f". Process {who['pid']} has exited, but a process it started (a data-loader "
                "worker?) still holds the lock; it goes when that process does")
    elif who and who.get("host") != socket.gethostname():
        msg += (". If that host has crashed, its lock is released when its lease on the file "
                "server expires (NFSv4: about 90 s)")
    return msg


class DirectoryLock:
    """An exclusive lock on a checkpoint directory, held until `release()` or process exit."""

    def __init__(self, directory: Path, log=print):
        self.directory = directory
        self.path = directory / LOCK_FILE
        self._file = None
        try:
            directory.mkdir(parents=True, exist_ok=True)
            f = open(self.path, "a+", encoding="utf-8")  # never truncate before we hold the lock
        except OSError as e:
            raise UserError(f"checkpoint directory {directory}: cannot create {LOCK_FILE} "
                            f"({e.strerror})") from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise DirectoryLocked(_refusal(directory, _read_holder(self.path))) from None
        except OSError as e:
            f.close()
            if e.errno not in _UNSUPPORTED:
                raise
            log(f"warning: cannot lock {self.path} ({e.strerror}): this filesystem does not "
                "support flock (Lustre needs '-o flock', NFSv3 a lock daemon), so a second run "
                "started on this directory would not be stopped")
            return
        # Read through the locked descriptor: on NFS, where flock is a POSIX lock, opening and
        # closing the file a second time in this process would drop the lock.
        f.seek(0)
        try:
            previous = json.loads(f.read() or "null")
        except ValueError:
            previous = None
        if previous:  # a clean exit empties the file: this run ended without releasing
            log(f"note: the previous run on {directory} ({_describe(previous)}) ended without "
                "releasing its lock (killed or crashed); taking it over")
        f.truncate(0)
        f.write(json.dumps(_me()))
        f.flush()
        os.fsync(f.fileno())
        self._file = f

    def release(self) -> None:
        """Empty the file (the mark of a clean exit), then unlock. The file itself stays: deleting
        it would let a run that had opened the old file lock it while another locks a new one."""
        f, self._file = self._file, None
        if f is None:
            return
        try:
            f.truncate(0)
            f.flush()
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            f.close()
