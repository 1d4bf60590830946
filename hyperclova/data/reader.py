"""The one reader of corpus files, for every tool: JSON lines or plain text, plain, gzip or zstd.

    files = expand_inputs(["dir/", "a.jsonl.gz", "shards/*.zst"])
    stats = ReadStats()
    for rec in iter_records(files, json_keys=("text",), stats=stats):
        rec.path, rec.line, rec.texts, rec.record
    print(stats.summary())          # read N = kept K + skipped S, by reason, with file:line

The cleaner, the tokenizer trainer, the serializer and the generic JSONL readers of evaluation and
tuning all read through here, so a line means the same thing in every tool (docs/data.md):

- lines end at "\\n" only; a trailing "\\r" (CRLF files) is dropped; the last line needs no "\\n";
- a UTF-8 byte-order mark at the start of a file is dropped;
- a line that is not UTF-8 is skipped as `invalid_utf8`, one holding a NUL byte (binary data or
  UTF-16 text) as `nul_byte`, a blank one as `empty_text`;
- in text files the line is the document; in JSON lines files the line must be a JSON object
  (`invalid_json`, `not_an_object`) holding every requested key (`missing_key`) as a string
  (`non_string`) that is valid Unicode (`invalid_unicode`: a lone surrogate escape) and not blank
  (`empty_text`). With several keys a line is kept only when every key is good.

Skipped lines are counted by reason with their first file:line locations; `strict=True` raises a
UserError at the first one instead. Two paths share those rules (`_parse_line`): `iter_records`
serves simple callers record by record, while parallel callers cut the inputs into byte ranges of
whole lines (`plan_ranges`), ranges into blocks (`read_blocks`), and call `parse_block` in their
worker processes, so the reading process only moves bytes.
"""
from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import random
import re
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Iterator, NamedTuple, Optional, Sequence, Union

from hyperclova.errors import UserError

INPUT_FORMATS = ("auto", "jsonl", "text")
_FORMAT_OF_SUFFIX = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".txt": "text"}
_COMPRESSION_OF_SUFFIX = {".gz": "gz", ".zst": "zst"}
KNOWN_EXTENSIONS = ".jsonl/.json/.ndjson (JSON lines) or .txt (text), each optionally .gz/.zst"

# Why a line is skipped; summaries list the reasons in this order.
REASONS = {
    "invalid_utf8": "invalid UTF-8",
    "nul_byte": "NUL byte (binary data or UTF-16 text?)",
    "invalid_json": "invalid JSON",
    "not_an_object": "JSON line is not an object",
    "missing_key": "missing key",
    "non_string": "value is not a string",
    "invalid_unicode": "lone surrogate escape in string",
    "empty_text": "empty text",
}
EXAMPLES_PER_REASON = 5  # file:line locations kept per reason
DEFAULT_BLOCK_BYTES = 1 << 20
_BOM = "\ufeff"
_GLOB_CHARS = re.compile(r"[*?\[]")
# Only a JSON escape can put a lone surrogate into a str decoded from valid UTF-8.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


# --- which files ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputFile:
    path: str
    format: str  # "jsonl" or "text"
    compression: Optional[str] = None  # None, "gz" or "zst"


def _classify(path: str) -> tuple[Optional[str], Optional[str]]:
    """(format, compression) from the file name, case-insensitively; format None when unknown."""
    name = os.path.basename(path).lower()
    compression = None
    for suffix, kind in _COMPRESSION_OF_SUFFIX.items():
        if name.endswith(suffix):
            compression, name = kind, name[: -len(suffix)]
    return _FORMAT_OF_SUFFIX.get(os.path.splitext(name)[1]), compression


def _walk(directory: str) -> list[str]:
    """Files with a known extension under `directory`, recursively, sorted; hidden ones skipped."""
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, f) for f in files if not f.startswith(".") and _classify(f)[0]]
    return sorted(found)


def expand_inputs(inputs: Union[str, os.PathLike, Iterable], input_format: str = "auto") -> list[InputFile]:
    """Files, directories (recursive) and globs -> InputFiles in a stable order.

    The format comes from the extension (see KNOWN_EXTENSIONS) unless `input_format` names one; a
    directory contributes only files with a known extension. UserError names the input when it
    matches nothing, when a file's format is unknown, or when a file is named twice.
    """
    if input_format not in INPUT_FORMATS:
        raise UserError(f"--input-format must be one of {', '.join(INPUT_FORMATS)}, got {input_format!r}")
    if isinstance(inputs, (str, os.PathLike, InputFile)):
        inputs = [inputs]
    out: list[InputFile] = []
    named_by: dict[str, str] = {}
    for item in inputs:
        label = item.path if isinstance(item, InputFile) else os.fspath(item)
        if isinstance(item, InputFile):
            pairs = [(item.path, item)]
        else:
            pairs = [(p, _input_file(p, input_format)) for p in _paths_of(label)]
        for path, f in pairs:
            real = os.path.realpath(path)
            if real in named_by:
                raise UserError(f"input file {path} is given twice (by {named_by[real]!r} and {label!r})")
            named_by[real] = label
            out.append(f)
    if not out:
        raise UserError("no input files given")
    return out


def _paths_of(item: str) -> list[str]:
    if os.path.isdir(item):
        found = _walk(item)
        if not found:
            raise UserError(f"input directory {item} holds no {KNOWN_EXTENSIONS} files")
        return found
    if os.path.isfile(item):
        return [item]
    if _GLOB_CHARS.search(item):
        matches = sorted(glob.glob(item, recursive=True))
        if not matches:
            raise UserError(f"input {item} matches no file")
        return [p for m in matches for p in (_walk(m) if os.path.isdir(m) else [m])]
    raise UserError(f"input {item} does not exist")


def _input_file(path: str, input_format: str) -> InputFile:
    fmt, compression = _classify(path)
    if input_format != "auto":
        fmt = input_format
    if fmt is None:
        raise UserError(f"{path}: cannot tell the format from the extension ({KNOWN_EXTENSIONS}); "
                        "pass --input-format jsonl|text")
    return InputFile(path, fmt, compression)


def check_json_keys(json_keys: Sequence[str], files: Sequence[InputFile] = ()) -> tuple[str, ...]:
    if isinstance(json_keys, str):
        json_keys = (json_keys,)
    keys = tuple(json_keys)
    if not keys or len(set(keys)) != len(keys) or not all(isinstance(k, str) and k for k in keys):
        raise UserError(f"--json-keys must name one or more distinct keys, got {list(keys)}")
    if len(keys) > 1:
        for f in files:
            if f.format == "text":
                raise UserError(f"{f.path}: a text file has one document per line: give a single --json-keys name")
    return keys


def add_input_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """--input, --json-keys, --input-format and --strict: the same flags and meanings in every tool."""
    g = parser.add_argument_group("input (the same in every tool; see docs/data.md)")
    g.add_argument("--input", nargs="+", required=required, default=None if required else [], metavar="PATH",
                   help=f"files, directories (searched recursively) or quoted globs: {KNOWN_EXTENSIONS}")
    g.add_argument("--json-keys", nargs="+", default=["text"], metavar="KEY",
                   help="JSON keys holding the text (default: text)")
    g.add_argument("--input-format", choices=INPUT_FORMATS, default="auto",
                   help="auto: from the file extension (case-insensitive)")
    g.add_argument("--strict", action="store_true",
                   help="stop at the first bad line instead of skipping and counting it")


# --- accounting ----------------------------------------------------------------------------------


@dataclass
class ReadStats:
    """Lines read = kept + skipped (by reason), with the first file:line locations per reason.

    Lines passed over by sampling (`unsampled`) are not parsed and not counted as read.
    """

    read: int = 0
    kept: int = 0
    skipped: dict = field(default_factory=dict)  # reason -> count
    unsampled: int = 0
    locations: dict = field(default_factory=dict)  # reason -> [(path, line, detail)], the first few

    @property
    def lines(self) -> int:
        return self.read + self.unsampled

    @property
    def examples(self) -> dict[str, list[str]]:
        return {r: [f"{p}:{n}: {d}" for p, n, d in where] for r, where in self._ordered_locations()}

    def skip(self, reason: str, path: str, line: int, detail: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        where = self.locations.setdefault(reason, [])
        if len(where) < EXAMPLES_PER_REASON:
            where.append((path, line, detail))

    def merge(self, other: "ReadStats", line_offset: int = 0) -> None:
        """Add `other`, which follows this one in input order; `line_offset` shifts its line
        numbers (those of a range that starts mid-file count from the range's start)."""
        self.read += other.read
        self.kept += other.kept
        self.unsampled += other.unsampled
        for reason, n in other.skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + n
        for reason, where in other.locations.items():
            mine = self.locations.setdefault(reason, [])
            for path, line, detail in where[: max(0, EXAMPLES_PER_REASON - len(mine))]:
                mine.append((path, line + line_offset, detail))

    def first_bad(self) -> Optional[tuple[str, str, int, str]]:
        """(reason, path, line, detail) of the first skipped line (of one file), if any."""
        found = [(line, reason, path, detail) for reason, where in self.locations.items()
                 for path, line, detail in where]
        if not found:
            return None
        line, reason, path, detail = min(found)
        return reason, path, line, detail

    def summary(self, indent: str = "") -> str:
        out = [f"{indent}read {self.read:,} = kept {self.kept:,} + skipped {sum(self.skipped.values()):,}"
               + (f" (and {self.unsampled:,} lines not sampled)" if self.unsampled else "")]
        for reason, where in self._ordered_locations():
            out.append(f"{indent}  skipped, {REASONS.get(reason, reason)}: {self.skipped[reason]:,}")
            out += [f"{indent}    {p}:{n}: {d}" for p, n, d in where]
        return "\n".join(out)

    def _ordered_locations(self):
        order = list(REASONS) + sorted(set(self.skipped) - set(REASONS))
        return [(r, self.locations.get(r, [])) for r in order if self.skipped.get(r)]

    def to_json(self) -> dict:
        return {"read": self.read, "kept": self.kept, "skipped": dict(self.skipped),
                "unsampled": self.unsampled,
                "locations": {r: [list(w) for w in where] for r, where in self.locations.items()}}

    @classmethod
    def from_json(cls, d: dict) -> "ReadStats":
        return cls(d["read"], d["kept"], dict(d["skipped"]), d.get("unsampled", 0),
                   {r: [tuple(w) for w in where] for r, where in d["locations"].items()})


def bad_line_error(path: str, line: int, reason: str, detail: str) -> UserError:
    return UserError(f"{path}:{line}: {REASONS.get(reason, reason)} ({detail}); "
                     "drop --strict to skip and count such lines")


# --- byte ranges and blocks ----------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """Whole lines of one file: bytes [start, end) (end -1: to the end). Compressed files cannot be
    split and are one range. Line numbers of a range that starts mid-file count from its start."""

    file: InputFile
    start: int = 0
    end: int = -1

    def to_json(self) -> dict:
        return {"file": asdict(self.file), "start": self.start, "end": self.end}

    @classmethod
    def from_json(cls, d: dict) -> "Range":
        return cls(InputFile(**d["file"]), d["start"], d["end"])


def plan_ranges(files: Sequence[InputFile], range_bytes: int) -> list[Range]:
    """Cut plain files into ranges of about `range_bytes`, each ending at a line end. Only the cut
    points are read (a seek and the rest of one line each), so planning is cheap at any size."""
    if range_bytes < 1:
        raise ValueError(f"range_bytes must be >= 1, got {range_bytes}")
    ranges = []
    for f in files:
        if f.compression:
            ranges.append(Range(f))
            continue
        size = os.path.getsize(f.path)
        start = 0
        with _open(f) as fh:
            while start < size:
                end = start + range_bytes
                if end < size:
                    fh.seek(end - 1)
                    fh.readline()  # run on to the end of the line the cut falls in
                    end = fh.tell()
                ranges.append(Range(f, start, min(end, size)))
                start = end
    return ranges


@dataclass
class Block:
    """Whole lines of one range, as read from disk (decoded and parsed by `parse_block`)."""

    index: int  # position of its range in the sequence given to read_blocks
    path: str
    format: str
    first_line: int  # number of the block's first line, counted from its range's start (1-based)
    data: bytes
    file_start: bool  # the block starts at byte 0 of its file (a BOM there is dropped)


def _open(f: InputFile):
    try:
        if f.compression == "gz":
            return gzip.open(f.path, "rb")
        if f.compression == "zst":
            try:
                import zstandard
            except ImportError:
                raise UserError(f"{f.path}: reading .zst needs the 'zstandard' package (pip install zstandard)")
            return zstandard.ZstdDecompressor().stream_reader(open(f.path, "rb"), closefd=True)
        return open(f.path, "rb")
    except OSError as e:
        raise UserError(f"cannot read {f.path}: {e.strerror or e}") from None


def _chunks(r: Range, chunk_bytes: int) -> Iterator[bytes]:
    """The bytes of a range, decompressed, in pieces of at most `chunk_bytes`."""
    with _open(r.file) as f:
        if r.start:
            f.seek(r.start)
        left = r.end - r.start if r.end >= 0 else -1
        while left:
            try:
                chunk = f.read(chunk_bytes if left < 0 else min(chunk_bytes, left))
            except Exception as e:  # a corrupt or truncated .gz/.zst: name the file, not a trace
                if isinstance(e, (MemoryError, KeyboardInterrupt)):
                    raise
                raise UserError(f"{r.file.path}: cannot read ({type(e).__name__}: {e}); "
                                "is the file truncated or corrupt?") from None
            if not chunk:
                return
            if left > 0:
                left -= len(chunk)
            yield chunk


def read_blocks(ranges: Sequence[Range], block_bytes: int = DEFAULT_BLOCK_BYTES) -> Iterator[Block]:
    """Cut ranges into blocks of about `block_bytes` that end at a line end.

    Memory stays at a block or two whatever the file size; a line longer than a block is kept
    whole (it is one document).
    """
    for index, r in enumerate(ranges):
        line, partial, first = 1, [], r.start == 0  # partial: pieces of a line not yet ended
        for chunk in _chunks(r, block_bytes):
            cut = chunk.rfind(b"\n") + 1
            if cut == 0:
                partial.append(chunk)
                continue
            data = b"".join(partial + [chunk[:cut]]) if partial else chunk[:cut]
            partial = [chunk[cut:]] if cut < len(chunk) else []
            yield Block(index, r.file.path, r.file.format, line, data, first)
            line += data.count(b"\n")
            first = False
        if partial:
            yield Block(index, r.file.path, r.file.format, line, b"".join(partial), first)


# --- the per-line rules --------------------------------------------------------------------------


class Record(NamedTuple):
    path: str
    line: int  # 1-based
    texts: tuple  # one str per json key, in order (text files: the line)
    record: dict  # the whole JSON object ({} for text files)
    nbytes: int  # bytes of the line in the file (decompressed), its "\n" included


def _decode_lines(data: bytes) -> list:
    """The block's lines as str, decoded in one call; a line that is not UTF-8 stays bytes."""
    try:
        lines = data.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        lines = [_decode_or_keep(raw) for raw in data.split(b"\n")]
    if lines and not lines[-1]:
        lines.pop()  # the block's final "\n" ends a line rather than starting one
    return lines


def _decode_or_keep(raw: bytes):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _parse_line(line, fmt: str, keys: tuple, may_hold_nul: bool):
    """(texts, record, "", "") for a good line, or (None, None, reason, detail) for a bad one."""
    if isinstance(line, bytes):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as e:
            return None, None, "invalid_utf8", f"byte {e.start}: {e.reason}"
    if line.endswith("\r"):
        line = line[:-1]
    if may_hold_nul and "\x00" in line:
        return None, None, "nul_byte", f"at character {line.index(chr(0))}"
    if not line.strip():
        return None, None, "empty_text", "blank line"
    if fmt == "text":
        return (line,), {}, "", ""
    try:
        record = json.loads(line)
    except ValueError as e:
        return None, None, "invalid_json", str(e)
    except RecursionError:
        return None, None, "invalid_json", "nested too deeply"
    if not isinstance(record, dict):
        return None, None, "not_an_object", f"got {type(record).__name__}"
    values = []
    for key in keys:
        if key not in record:
            return None, None, "missing_key", f"no key {key!r}"
        value = record[key]
        if not isinstance(value, str):
            return None, None, "non_string", f"{key!r} is {type(value).__name__}"
        values.append(value)
    if _SURROGATE_ESCAPE.search(line):
        for key, value in zip(keys, values):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as e:
                return None, None, "invalid_unicode", f"{key!r} character {e.start}: {e.reason}"
    for key, value in zip(keys, values):
        if not value.strip():
            return None, None, "empty_text", f"{key!r} is {'whitespace only' if value else 'empty'}"
    return tuple(values), record, "", ""


def parse_block(block: Block, json_keys: Sequence[str] = ("text",), stats: Optional[ReadStats] = None,
                keep: Optional[Callable[[], bool]] = None) -> list[Record]:
    """The good records of a block; bad lines are counted in `stats`. `keep`, when given, is asked
    once per line before it is parsed (sampling): lines it declines count as `unsampled`."""
    keys = tuple(json_keys)
    stats = stats if stats is not None else ReadStats()
    lines = _decode_lines(block.data)
    if block.file_start and lines and isinstance(lines[0], str) and lines[0].startswith(_BOM):
        lines[0] = lines[0][1:]
    may_hold_nul = b"\x00" in block.data
    path, fmt, first = block.path, block.format, block.first_line
    out = []
    for i, line in enumerate(lines):
        if keep is not None and not keep():
            stats.unsampled += 1
            continue
        stats.read += 1
        texts, record, reason, detail = _parse_line(line, fmt, keys, may_hold_nul)
        if texts is None:
            stats.skip(reason, path, first + i, detail)
            continue
        stats.kept += 1
        out.append(Record(path, first + i, texts, record, len(line.encode("utf-8")) + 1))
    return out


# --- record by record ----------------------------------------------------------------------------


def _ranges_of(items, input_format: str) -> list[Range]:
    if isinstance(items, (str, os.PathLike, InputFile, Range)):
        items = [items]
    ranges, pending = [], []
    for item in list(items) + [None]:
        if isinstance(item, (str, os.PathLike, InputFile)):
            pending.append(item)
            continue
        if pending:
            ranges += [Range(f) for f in expand_inputs(pending, input_format)]
            pending = []
        if item is not None:
            ranges.append(item)
    if not ranges:
        raise UserError("no input files given")
    return ranges


def iter_records(files_or_inputs, json_keys: Sequence[str] = ("text",), input_format: str = "auto",
                 strict: bool = False, stats: Optional[ReadStats] = None, *, sample_ratio: float = 1.0,
                 seed: int = 0, block_bytes: int = DEFAULT_BLOCK_BYTES) -> Iterator[Record]:
    """Good records of the inputs (paths, globs, directories, InputFiles or Ranges), in order.

    Bad lines are counted in `stats`, or with `strict` raise a UserError naming the first one.
    With `sample_ratio` < 1 each line is kept with that probability (seeded: a rerun picks the same
    lines), decided before it is parsed.
    """
    ranges = _ranges_of(files_or_inputs, input_format)
    keys = check_json_keys(json_keys, [r.file for r in ranges])
    stats = stats if stats is not None else ReadStats()
    keep = None
    if sample_ratio < 1.0:
        rng = random.Random(seed)
        keep = lambda: rng.random() < sample_ratio  # noqa: E731
    for block in read_blocks(ranges, block_bytes):
        local = ReadStats()
        records = parse_block(block, keys, local, keep)
        if strict and local.skipped:
            reason, path, line, detail = local.first_bad()
            yield from (r for r in records if r.line < line)
            start = ranges[block.index].start
            raise bad_line_error(path, line + (count_lines(path, start) if start else 0), reason, detail)
        stats.merge(local)
        yield from records


def count_lines(path: str, end: int) -> int:
    """Newlines in the first `end` bytes of a plain file (the line number a range at `end` starts
    after); used only to report an absolute line."""
    n = 0
    with open(path, "rb") as f:
        while end > 0:
            chunk = f.read(min(end, 1 << 24))
            if not chunk:
                break
            n += chunk.count(b"\n")
            end -= len(chunk)
    return n


# --- sizes and changes ---------------------------------------------------------------------------


def text_bytes(f: InputFile, probe: int = 1 << 22) -> int:
    """Bytes of text in a file; for a compressed file estimated from the compression ratio of its
    first 4 MiB of text (sampling by a byte budget must see the text size, not the file size)."""
    size = os.path.getsize(f.path)
    if not f.compression:
        return size
    with open(f.path, "rb") as raw:
        if f.compression == "gz":
            stream = gzip.GzipFile(fileobj=raw)
        else:
            import zstandard

            stream = zstandard.ZstdDecompressor().stream_reader(raw, read_size=1 << 16, closefd=False)
        head = 0
        while head < probe:
            chunk = stream.read(probe - head)
            if not chunk:
                break
            head += len(chunk)
        consumed = raw.tell()
    return head if head < probe else int(size * head / max(consumed, 1))


def input_state(files: Sequence[InputFile]) -> list[list]:
    """[path, size, mtime_ns] per file: what a resumable job records at planning time."""
    return [[f.path, *_size_mtime(f.path)] for f in files]


def changed_inputs(state: Sequence[Sequence]) -> list[str]:
    """How the files recorded by `input_state` differ now (empty when none changed)."""
    out = []
    for path, size, mtime in state:
        try:
            now = _size_mtime(path)
        except OSError:
            out.append(f"{path} is gone")
            continue
        if now[0] != size:
            out.append(f"{path}: {size:,} -> {now[0]:,} bytes")
        elif now[1] != mtime:
            out.append(f"{path}: modified since")
    return out


def _size_mtime(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns
