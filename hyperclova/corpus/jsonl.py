"""JSONL out, atomically: a file appears under its final name only when complete.

(Reading goes through the one reader, `hyperclova.data.reader`.)
"""
from __future__ import annotations

import json
import os
from pathlib import Path


class AtomicWriter:
    """Write lines to `path.tmp<pid>` and rename onto `path` only on `commit()`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f"{self.path.name}.tmp{os.getpid()}")
        self.f = open(self.tmp, "w", encoding="utf-8")
        self.count = 0

    def write(self, rec: dict) -> int:
        line = json.dumps(rec, ensure_ascii=False) + "\n"
        self.f.write(line)
        self.count += 1
        return len(line.encode("utf-8"))

    def commit(self) -> None:
        self.f.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.f.close()
        self.tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | Path, obj) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)
