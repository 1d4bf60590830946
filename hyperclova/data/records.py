"""The serializer's worker side: blocks of input lines in, token arrays and read accounting out.

The reading process only cuts files into blocks of whole lines (hyperclova.data.reader); everything
per document — decoding, parsing and checking each line by the reader's rules, batched encoding
and packing into one flat array — happens here, in the worker processes. This module imports
neither torch nor megatron-core, so forking workers stays cheap.
"""
from __future__ import annotations

import itertools
import signal
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from hyperclova.data.reader import Block, ReadStats, parse_block


@dataclass(frozen=True)
class EncodeSettings:
    """What every worker (and every task, on any machine) needs to encode exactly alike."""

    tokenizer_dir: str
    json_keys: tuple
    append_eod: bool
    dtype: str  # of the token arrays: "uint16" or "int32"


@dataclass
class BlockResult:
    index: int  # the block's range, as numbered by read_blocks
    nbytes: int
    stats: ReadStats  # line numbers counted from the range's start
    tokens: dict[str, np.ndarray]  # per json key: the written documents back to back
    lengths: dict[str, np.ndarray]  # per json key: int32 length of each written document

    @property
    def written(self) -> int:
        return len(next(iter(self.lengths.values())))


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
        self.keys = tuple(keys)
        self.eod = tokenizer.eod_id if append_eod else None
        self.dtype = np.dtype(dtype)
        self.vocab_size = tokenizer.vocab_size

    def __call__(self, block: Block) -> BlockResult:
        stats = ReadStats()
        records = parse_block(block, self.keys, stats)
        # Per key, the texts of the kept lines: the shards of several keys stay aligned.
        columns = list(zip(*(r.texts for r in records))) or [()] * len(self.keys)
        tokens, lengths = {}, {}
        for key, batch in zip(self.keys, columns):
            ids = self.tokenizer.encode_batch(list(batch)) if batch else []
            tokens[key], lengths[key] = pack(ids, self.eod, self.dtype)
            if tokens[key].size and int(tokens[key].max()) >= self.vocab_size:
                raise RuntimeError(f"tokenizer produced id {int(tokens[key].max())} >= vocab {self.vocab_size}")
        return BlockResult(block.index, len(block.data), stats, tokens, lengths)


# One encoder per process: set by the Pool initializer in worker processes (the standard idiom for
# per-process state too costly to rebuild or pickle for every task), or on first use by a task
# runner, whose process (a Ray worker) may run many tasks with the same settings.
_ENCODER: Optional[tuple[EncodeSettings, BlockEncoder]] = None
_INIT_ERROR: Optional[BaseException] = None


def encoder_for(settings: EncodeSettings) -> BlockEncoder:
    global _ENCODER
    if _ENCODER is None or _ENCODER[0] != settings:
        from hyperclova.tokenizer import load_tokenizer

        # One process per core: every engine's own thread pool would only oversubscribe the cores.
        tok = load_tokenizer(settings.tokenizer_dir, threads=1)
        _ENCODER = (settings, BlockEncoder(tok, settings.json_keys, settings.append_eod, np.dtype(settings.dtype)))
    return _ENCODER[1]


def init_worker(settings: EncodeSettings) -> None:
    global _INIT_ERROR
    from hyperclova.processes import die_with_parent

    die_with_parent()
    # Ctrl-C reaches the whole process group; the reading process alone handles it and cleans up.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        encoder_for(settings)
    except BaseException as e:  # reported with the first task, where the reader sees it
        _INIT_ERROR = e


def worker_ready() -> None:
    if _INIT_ERROR is not None:
        raise RuntimeError(f"worker could not load the tokenizer: {_INIT_ERROR!r}") from _INIT_ERROR
    assert _ENCODER is not None, "init_worker was not run"


def encode_block(block: Block) -> BlockResult:
    worker_ready()
    return _ENCODER[1](block)
