"""Side-by-side helpers for before/after benchmarks: an older tree of this repository (from git) and
child processes that import either tree, so both run alternately in one benchmark run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import io
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def checkout(rev: str, dest: Path) -> Path:
    """The files of `rev` (e.g. main) under `dest`, without touching this checkout."""
    if not (dest / "hyperclova").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        data = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(dest)
    return dest


def child_env(tree: Path) -> dict:
    """An environment whose `import hyperclova` resolves to `tree`."""
    return {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def run_python(tree: Path, code: str, *args: str, cwd: Path | None = None) -> dict:
    """Run `code` in a fresh interpreter importing `tree`; it prints one JSON object last."""
    res = subprocess.run([sys.executable, "-c", code, *args], env=child_env(tree), cwd=cwd or tree,
                         capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f"child failed in {tree}:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])
