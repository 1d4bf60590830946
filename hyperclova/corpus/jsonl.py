"""JSONL in and out: task planning by byte range, tolerant reading, atomic writing.

A task is a byte range of one input file, cut at line boundaries, so big files split into many
tasks; compressed files (.gz, .zst) cannot be split and are one task each. The plan records the
line number each range starts at, so a bad line is reported as file:line from any task.
"""
from __future__ import annotations

import gzip
import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from hyperclova.errors import UserError

_COMPRESSED = (".gz", ".zst")


@dataclass(frozen=True)
class Task:
    task_id: int
    path: str
    start: int  # byte offset of the first line (plain files); 0 for compressed files
    end: int  # byte offset one past the last line; -1 = to the end
    first_line: int  # 1-based line number of the first line


@dataclass
class BadLine:
    path: str
    line: int
    reason: str  # invalid_json | not_utf8 | missing_text | not_an_object

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


def list_inputs(inputs: list[str]) -> list[Path]:
    """Expand files and directories (*.jsonl, *.jsonl.gz, *.jsonl.zst, *.json) in a stable order."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and _is_jsonl(q))
            if not found:
                raise UserError(f"input directory {p} holds no .jsonl/.jsonl.gz/.jsonl.zst files")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"input {p} does not exist")
    return files


def _is_jsonl(p: Path) -> bool:
    name = p.name
    for ext in _COMPRESSED:
        name = name.removesuffix(ext)
    return name.endswith((".jsonl", ".json"))


def plan_tasks(files: list[Path], task_bytes: int) -> list[Task]:
    """Cut each input into ranges of about `task_bytes`, ending on a newline."""
    tasks: list[Task] = []
    for path in files:
        if path.name.endswith(_COMPRESSED):
            tasks.append(Task(len(tasks), str(path), 0, -1, 1))
            continue
        size = path.stat().st_size
        start, line = 0, 1
        with open(path, "rb") as f:
            while start < size:
                f.seek(start)
                chunk = f.read(task_bytes)
                if start + len(chunk) < size:
                    chunk += f.readline()  # run on to the end of the line the cut falls in
                end = start + len(chunk)
                tasks.append(Task(len(tasks), str(path), start, end, line))
                line += chunk.count(b"\n")
                start = end
    return tasks


def _open_binary(path: str):
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.endswith(".zst"):
        try:
            import zstandard
        except ImportError:
            raise UserError(f"{path}: reading .zst needs the 'zstandard' package (pip install zstandard)")
        return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)
    return open(path, "rb")


def read_task(task: Task) -> Iterator[tuple[int, dict | None, BadLine | None]]:
    """Yield (line_number, record, None) for good lines and (line_number, None, BadLine) for bad ones."""
    with _open_binary(task.path) as raw:
        stream = io.BufferedReader(raw) if task.path.endswith(".zst") else raw
        if task.start:
            stream.seek(task.start)
        pos, lineno = task.start, task.first_line
        for raw_line in stream:
            if task.end >= 0 and pos >= task.end:
                break
            pos += len(raw_line)
            yield lineno, *_parse(task.path, lineno, raw_line)
            lineno += 1


def _parse(path: str, lineno: int, raw_line: bytes) -> tuple[dict | None, BadLine | None]:
    if not raw_line.strip():
        return None, BadLine(path, lineno, "empty_line")
    try:
        text = raw_line.decode("utf-8")
    except UnicodeDecodeError:
        return None, BadLine(path, lineno, "not_utf8")
    try:
        rec = json.loads(text)
    except json.JSONDecodeError:
        return None, BadLine(path, lineno, "invalid_json")
    if not isinstance(rec, dict):
        return None, BadLine(path, lineno, "not_an_object")
    if not isinstance(rec.get("text"), str):
        return None, BadLine(path, lineno, "missing_text")
    return rec, None


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


def tasks_to_json(tasks: list[Task]) -> list[dict]:
    return [asdict(t) for t in tasks]


def tasks_from_json(items: list[dict]) -> list[Task]:
    return [Task(**d) for d in items]
