"""Reading training text: JSONL (one object per line, text under `json_key`) or plain text (one
document per line), optionally gzip-compressed, with a reproducible document sample."""
from __future__ import annotations

import gzip
import json
import os
import random
import re
from dataclasses import dataclass, field
from typing import Iterator

from hyperclova.errors import UserError

INVALID_UTF8 = ("error", "replace")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class ReadStats:
    docs_seen: int = 0
    docs_kept: int = 0
    bytes_kept: int = 0
    replaced_lines: int = 0  # lines with invalid UTF-8 decoded with U+FFFD (on_invalid_utf8="replace")
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def is_jsonl(path: str) -> bool:
    name = path[:-3] if path.endswith(".gz") else path
    return name.endswith((".jsonl", ".json", ".ndjson"))


def _open(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _text_size(path: str, probe: int = 1 << 22) -> int:
    """Bytes of text in `path`; for .gz, estimated from the compression ratio of its first 4 MiB
    (sampling by budget must see the text size, not the compressed size)."""
    size = os.path.getsize(path)
    if not path.endswith(".gz"):
        return size
    with open(path, "rb") as raw, gzip.GzipFile(fileobj=raw) as g:
        head = len(g.read(probe))
        return head if head < probe else int(size * head / max(raw.tell(), 1))


def check_files(files: list[str]) -> None:
    if not files:
        raise UserError("no input files given")
    for f in files:
        if not os.path.isfile(f):
            raise UserError(f"input file {f!r} does not exist")


def sample_ratio_for(files: list[str], sample_ratio: float | None, sample_bytes: int | None) -> float:
    """The Bernoulli keep-probability per document; with a byte budget it is budget / input size."""
    if sample_ratio is not None and sample_bytes is not None:
        raise UserError("give --sample-ratio or --sample-bytes, not both")
    if sample_ratio is not None:
        if not 0 < sample_ratio <= 1:
            raise UserError(f"--sample-ratio must be in (0, 1], got {sample_ratio}")
        return sample_ratio
    if sample_bytes is not None:
        if sample_bytes <= 0:
            raise UserError(f"--sample-bytes must be positive, got {sample_bytes}")
        total = sum(_text_size(f) for f in files)
        return min(1.0, sample_bytes / max(total, 1))
    return 1.0


def iter_documents(files: list[str], json_key: str = "text", ratio: float = 1.0, seed: int = 0,
                   max_bytes: int | None = None, on_invalid_utf8: str = "error",
                   stats: ReadStats | None = None) -> Iterator[str]:
    """Documents of `files` in order, each kept with probability `ratio` (seeded, so a rerun picks the
    same sample); stops after `max_bytes` kept bytes. Only kept lines are parsed."""
    if on_invalid_utf8 not in INVALID_UTF8:
        raise UserError(f"on_invalid_utf8 must be one of {INVALID_UTF8}, got {on_invalid_utf8!r}")
    stats = stats if stats is not None else ReadStats()
    rng = random.Random(seed)
    for path in files:
        jsonl = is_jsonl(path)
        with _open(path) as f:
            for lineno, raw in enumerate(f, 1):
                stats.docs_seen += 1
                if ratio < 1.0 and rng.random() >= ratio:
                    continue
                text = _decode(raw, path, lineno, on_invalid_utf8, stats)
                if not jsonl:  # a text line is the document without its line terminator, as
                    text = text.rstrip("\n").removesuffix("\r")  # the serializer reads it
                if jsonl:
                    text = _json_text(text, path, lineno, json_key, on_invalid_utf8, stats)
                    if text is None:
                        continue
                if not text.strip():
                    continue
                stats.docs_kept += 1
                stats.bytes_kept += len(raw)
                yield text
                if max_bytes is not None and stats.bytes_kept >= max_bytes:
                    return


def _decode(raw: bytes, path: str, lineno: int, mode: str, stats: ReadStats) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        if mode == "error":
            raise UserError(
                f"{path}:{lineno}: invalid UTF-8 at byte {e.start} of the line "
                f"({raw[e.start:e.start + 4]!r}); fix the file or pass --on-invalid-utf8 replace"
            ) from e
        stats.replaced_lines += 1
        return raw.decode("utf-8", errors="replace")


def _json_text(line: str, path: str, lineno: int, key: str, mode: str,
               stats: ReadStats) -> str | None:
    if not line.strip():
        stats.skip("blank line")
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from e
    if not isinstance(obj, dict):
        raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise UserError(f"{path}:{lineno}: no key {key!r} (keys: {sorted(obj)[:8]}); "
                        f"choose the text field with --json-key")
    text = obj[key]
    if not isinstance(text, str):
        raise UserError(f"{path}:{lineno}: key {key!r} holds {type(text).__name__}, not a string")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        if mode == "replace":
            stats.replaced_lines += 1
            return _SURROGATE.sub("\ufffd", text)
        raise UserError(f"{path}:{lineno}: key {key!r} contains a lone surrogate escape "
                        f"(\\u{ord(text[e.start]):04x}), which is not valid Unicode text") from e
    return text
