"""The serializer's worker side: raw input blocks in, token arrays and skip accounting out.

The reading process only cuts files into blocks of whole lines (a few C-level byte operations per
megabyte); everything per document — UTF-8 decoding, JSON parsing, checking, batched encoding and
packing into one flat array — happens here, in the worker processes. This module imports neither
torch nor megatron, so forking workers stays cheap.
"""
from __future__ import annotations

import itertools
import json
import re
import signal
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

import numpy as np

# Why a document is skipped; the summary lists them in this order.
REASONS = {
    "invalid_utf8": "invalid UTF-8",
    "invalid_json": "invalid JSON",
    "not_an_object": "JSON line is not an object",
    "missing_key": "missing key",
    "non_string": "value is not a string",
    "invalid_unicode": "lone surrogate escape in string",
    "empty_text": "empty text",
}
EXAMPLES_PER_REASON = 5  # file:line locations kept per reason, per block and in the summary
_BOM = "\ufeff"


@dataclass
class Block:
    """Whole lines cut from one input file."""

    file_index: int
    first_line: int  # 1-based number of the block's first line in its file
    fmt: str  # "jsonl" or "text"
    data: bytes


@dataclass
class Skip:
    line: int  # 1-based line number in the file
    reason: str  # a key of REASONS
    detail: str


@dataclass
class BlockResult:
    file_index: int
    lines: int  # documents read
    nbytes: int
    tokens: dict[str, np.ndarray]  # per json key: the written documents back to back
    lengths: dict[str, np.ndarray]  # per json key: int32 length of each written document
    skip_counts: dict[str, int] = field(default_factory=dict)
    skip_examples: list[Skip] = field(default_factory=list)  # the first few per reason, in order

    @property
    def written(self) -> int:
        return len(next(iter(self.lengths.values())))


def read_blocks(paths: Sequence[str], formats: Sequence[str], block_bytes: int) -> Iterator[Block]:
    """Cut files into blocks of about `block_bytes` that end at a line boundary.

    Memory stays at a block or two whatever the file size; a single line longer than a block is
    kept whole (it is one document).
    """
    for index, (path, fmt) in enumerate(zip(paths, formats)):
        with open(path, "rb") as f:
            line, partial = 1, []  # partial: pieces of a line not yet ended (joined once, not per read)
            while True:
                chunk = f.read(block_bytes)
                if not chunk:
                    if partial:
                        yield Block(index, line, fmt, b"".join(partial))
                    break
                cut = chunk.rfind(b"\n") + 1
                if cut == 0:
                    partial.append(chunk)
                    continue
                data = b"".join(partial + [chunk[:cut]]) if partial else chunk[:cut]
                partial = [chunk[cut:]] if cut < len(chunk) else []
                yield Block(index, line, fmt, data)
                line += data.count(b"\n")


def split_lines(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the block's final newline ends a line rather than starting one
    return lines


def decode_lines(data: bytes) -> list[str | bytes]:
    """The block's lines as str, decoded in one call; a line that is not UTF-8 stays bytes."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return [_decode_or_keep(raw) for raw in split_lines(data)]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _decode_or_keep(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


# Only a JSON escape can put a lone surrogate into a str decoded from valid UTF-8.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def parse_line(line: str | bytes, fmt: str, keys: Sequence[str]) -> tuple[Optional[list[str]], str, str]:
    """Texts of one line for each key, or (None, reason, detail) when the line must be skipped.

    `line` is bytes only when it is not valid UTF-8. With several keys a line is written only when
    every key is good, so the per-key shards stay aligned document for document.
    """
    if isinstance(line, bytes):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as e:
            return None, "invalid_utf8", f"byte {e.start}: {e.reason}"
    if not line.strip():
        return None, "empty_text", "blank line"
    if fmt == "text":
        values = [line[:-1] if line.endswith("\r") else line]
    else:
        try:
            record = json.loads(line)
        except ValueError as e:
            return None, "invalid_json", str(e)
        if not isinstance(record, dict):
            return None, "not_an_object", f"got {type(record).__name__}"
        values = []
        for key in keys:
            if key not in record:
                return None, "missing_key", f"no key {key!r}"
            value = record[key]
            if not isinstance(value, str):
                return None, "non_string", f"{key!r} is {type(value).__name__}"
            values.append(value)
    for value in values:
        if not value.strip():
            return None, "empty_text", "whitespace only" if value else "empty string"
    if fmt == "jsonl" and _SURROGATE_ESCAPE.search(line):
        for value in values:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as e:
                return None, "invalid_unicode", f"character {e.start}: {e.reason}"
    return values, "", ""


def pack(ids: list[list[int]], eod: Optional[int], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Flatten encoded documents into one token array plus lengths, appending `eod` if given."""
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int32, count=len(ids))
    if eod is not None:
        lengths += 1
        flat = itertools.chain.from_iterable(itertools.chain.from_iterable(zip(ids, itertools.repeat((eod,)))))
    else:
        flat = itertools.chain.from_iterable(ids)
    return np.fromiter(flat, dtype=dtype, count=int(lengths.sum(dtype=np.int64))), lengths


class BlockEncoder:
    """Turns a Block into a BlockResult with one `encode_batch` call per json key."""

    def __init__(self, tokenizer, keys: Sequence[str], append_eod: bool, dtype: np.dtype):
        self.tokenizer = tokenizer
        self.keys = list(keys)
        self.eod = tokenizer.eod_id if append_eod else None
        self.dtype = np.dtype(dtype)
        self.vocab_size = tokenizer.vocab_size

    def __call__(self, block: Block) -> BlockResult:
        lines = decode_lines(block.data)
        texts: list[list[str]] = [[] for _ in self.keys]
        counts: dict[str, int] = {}
        examples: list[Skip] = []
        for i, line in enumerate(lines):
            if i == 0 and block.first_line == 1 and isinstance(line, str) and line.startswith(_BOM):
                line = line[1:]
            values, reason, detail = parse_line(line, block.fmt, self.keys)
            if values is None:
                counts[reason] = counts.get(reason, 0) + 1
                if counts[reason] <= EXAMPLES_PER_REASON:
                    examples.append(Skip(block.first_line + i, reason, detail))
                continue
            for bucket, value in zip(texts, values):
                bucket.append(value)
        tokens, lengths = {}, {}
        for key, batch in zip(self.keys, texts):
            ids = self.tokenizer.encode_batch(batch) if batch else []
            tokens[key], lengths[key] = pack(ids, self.eod, self.dtype)
            if tokens[key].size and int(tokens[key].max()) >= self.vocab_size:
                raise RuntimeError(f"tokenizer produced id {int(tokens[key].max())} >= vocab {self.vocab_size}")
        return BlockResult(block.file_index, len(lines), len(block.data), tokens, lengths, counts, examples)


# One encoder per worker process, set by the Pool initializer: the standard multiprocessing idiom
# for per-process state that is too costly to rebuild (or pickle) for every task.
_ENCODER: Optional[BlockEncoder] = None
_INIT_ERROR: Optional[BaseException] = None


def init_worker(tokenizer_dir: str, keys: Sequence[str], append_eod: bool, dtype: str) -> None:
    global _ENCODER, _INIT_ERROR
    # Ctrl-C reaches the whole process group; the reading process alone handles it and cleans up.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        from hyperclova.tokenizer import load_tokenizer

        # One process per core: every engine's own thread pool would only oversubscribe the cores.
        tok = load_tokenizer(tokenizer_dir, threads=1)
        _ENCODER = BlockEncoder(tok, keys, append_eod, np.dtype(dtype))
    except BaseException as e:  # reported with the first task, where the reader sees it
        _INIT_ERROR = e


def worker_ready() -> None:
    if _INIT_ERROR is not None:
        raise RuntimeError(f"worker could not load the tokenizer: {_INIT_ERROR!r}") from _INIT_ERROR
    assert _ENCODER is not None, "init_worker was not run"


def encode_block(block: Block) -> BlockResult:
    worker_ready()
    return _ENCODER(block)
