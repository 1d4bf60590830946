"""JSONL or plain text in, Megatron `.bin/.idx` shards out: the library behind
`tools/preprocess_data.py`.

    stats = preprocess(["corpus.jsonl"], "data/news", tokenizer_dir="tok/", workers=8, append_eod=True)
    print(stats.summary())

One pass on one machine: the reading process cuts the inputs into ~1 MB blocks of whole lines
(`hyperclova.data.reader`) and streams them to `workers` processes, which parse, check and
batch-encode whole blocks (`records.py`); results come back in input order as flat token arrays and
are appended to the shards (the reading process encodes the first block itself, so forked workers
inherit a warm tokenizer). At most a few blocks per worker are in flight, so memory does not grow
with the input. Bad lines are skipped and counted by reason (or, with `strict`, stop the run at the
first one); each shard appears under its final name only once complete. `serialize_tasks.py` runs
the same encoding as resumable tasks on many machines and merges their shards into the same bytes.
"""
from __future__ import annotations

import itertools
import multiprocessing as mp
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from hyperclova.data import records
from hyperclova.data.indexed import ShardWriter, dtype_for_vocab, shard_prefix, stale_temporaries
from hyperclova.data.reader import (DEFAULT_BLOCK_BYTES, Range, ReadStats, bad_line_error, check_json_keys,
                                    count_lines, expand_inputs, read_blocks, text_bytes)
from hyperclova.errors import UserError
from hyperclova.paths import make_parent, refuse_overwrite
from hyperclova.tokenizer.load import tokenizer_fingerprint


@dataclass
class PreprocessStats:
    outputs: dict[str, str]  # json key -> shard prefix
    dtype: str
    files: int = 0
    read: ReadStats = field(default_factory=ReadStats)
    bytes_read: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    tasks: int = 0  # 0: one streaming pass; else the number of tasks merged

    @property
    def documents_read(self) -> int:
        return self.read.read

    @property
    def documents_written(self) -> int:
        return self.read.kept

    @property
    def documents_skipped(self) -> int:
        return sum(self.read.skipped.values())

    def summary(self) -> str:
        out = [self.read.summary()]
        for key, prefix in self.outputs.items():
            if key in self.tokens:  # committed
                out.append(f"wrote {prefix}.bin/.idx: {self.tokens[key]:,} {self.dtype} tokens ('{key}')")
        secs = max(self.seconds, 1e-9)
        where = f" in {self.tasks} tasks" if self.tasks else ""
        out.append(f"{self.files} file(s){where}, {self.bytes_read / 1e6:,.1f} MB in {self.seconds:.1f} s:"
                   f" {self.read.read / secs:,.0f} docs/s, {self.bytes_read / 1e6 / secs:.2f} MB/s")
        return "\n".join(out)


def load_settings(tokenizer_dir: str, json_keys: Sequence[str], append_eod: bool, files=()):
    """Check the arguments that decide the bytes written; returns (EncodeSettings, tokenizer)."""
    keys = check_json_keys(json_keys, files)
    from hyperclova.tokenizer import load_tokenizer

    if not Path(tokenizer_dir).is_dir():
        raise UserError(f"--tokenizer {tokenizer_dir} is not a directory")
    tokenizer = load_tokenizer(tokenizer_dir)
    if append_eod and tokenizer.eod_id is None:
        raise UserError(f"--append-eod: tokenizer {tokenizer_dir} has no end-of-document token")
    dtype = np.dtype(dtype_for_vocab(tokenizer.vocab_size)).name
    return records.EncodeSettings(str(tokenizer_dir), keys, append_eod, dtype), tokenizer


def prepare_outputs(output_prefix: str, keys: Sequence[str], overwrite: bool) -> dict[str, str]:
    """The shard prefix per key, after refusing to replace existing shards without `overwrite` and
    removing what a killed earlier run left behind."""
    make_parent(output_prefix, "--output-prefix")
    outputs = {key: shard_prefix(output_prefix, key) for key in keys}
    if not overwrite:
        refuse_overwrite([p + s for p in outputs.values() for s in (".bin", ".idx")],
                         f"--output-prefix {output_prefix}")
    for prefix in outputs.values():
        for path in stale_temporaries(prefix):
            Path(path).unlink(missing_ok=True)
    return outputs


def open_writers(outputs: dict[str, str], settings: records.EncodeSettings, vocab_size: int,
                 tokenizer_fingerprint: str) -> dict:
    return {k: ShardWriter(p, np.dtype(settings.dtype).type, vocab_size=vocab_size,
                           tokenizer_fingerprint=tokenizer_fingerprint) for k, p in outputs.items()}


def encode_ranges(ranges: Sequence[Range], writers: dict, settings: records.EncodeSettings, workers: int,
                  stats: PreprocessStats, strict: bool, block_bytes: int = DEFAULT_BLOCK_BYTES,
                  bar=None) -> None:
    """Encode `ranges` into `writers` in input order: in this process (workers == 1) or streamed
    through `workers` worker processes. Line numbers in `stats` count from each range's start."""
    blocks = read_blocks(ranges, block_bytes)
    fork = "fork" in mp.get_all_start_methods()
    if workers == 1 or fork:
        # The first block is encoded here. With fork, the workers then start from this process's
        # tokenizer, its morpheme cache already warm (copy-on-write): the frequent eojeols are
        # analysed once, not once per worker, and a one-block input starts no worker at all.
        encode = records.encoder_for(settings)
        first = next(blocks, None)
        if first is None:
            return
        _consume(encode(first), ranges, writers, stats, strict, bar)
        if workers == 1:
            for block in blocks:
                _consume(encode(block), ranges, writers, stats, strict, bar)
            return
        following = next(blocks, None)
        if following is None:
            return
        blocks = itertools.chain([following], blocks)
    ctx = mp.get_context("fork" if fork else "spawn")
    # A process pool that reports a killed worker (e.g. by the OOM killer) as BrokenProcessPool
    # instead of waiting forever, as multiprocessing.Pool would.
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=records.init_worker, initargs=(settings,))
    try:
        pool.submit(records.worker_ready).result()  # a tokenizer that fails to load in them fails here
        window: deque = deque()
        for block in blocks:
            window.append(pool.submit(records.encode_block, block))
            if len(window) > 2 * workers:
                _consume(window.popleft().result(), ranges, writers, stats, strict, bar)
        while window:
            _consume(window.popleft().result(), ranges, writers, stats, strict, bar)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _consume(result: records.BlockResult, ranges, writers, stats: PreprocessStats, strict: bool, bar) -> None:
    if strict and result.stats.skipped:
        reason, path, line, detail = result.stats.first_bad()
        start = ranges[result.index].start
        raise bad_line_error(path, line + (count_lines(path, start) if start else 0), reason, detail)
    for key, writer in writers.items():
        writer.add_documents(result.tokens[key], result.lengths[key])
    stats.read.merge(result.stats)
    stats.bytes_read += result.nbytes
    if bar is not None:
        bar.update(result.nbytes)
        bar.set_postfix_str(f"{stats.read.read:,} docs", refresh=False)


def preprocess(
    inputs: Sequence[str],
    output_prefix: str,
    tokenizer_dir: str,
    json_keys: Sequence[str] = ("text",),
    workers: int = 1,
    append_eod: bool = False,
    strict: bool = False,
    input_format: str = "auto",
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    progress: bool = True,
    overwrite: bool = False,
) -> PreprocessStats:
    """Serialize `inputs` into one shard per json key in one streaming pass; see the module docstring."""
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    files = expand_inputs(inputs, input_format)
    settings, tokenizer = load_settings(tokenizer_dir, json_keys, append_eod, files)
    outputs = prepare_outputs(output_prefix, settings.json_keys, overwrite)
    stats = PreprocessStats(outputs=outputs, dtype=settings.dtype, files=len(files))
    ranges = [Range(f) for f in files]
    writers: dict = {}
    bar = _progress_bar(sum(text_bytes(f) for f in files), progress)
    start = time.perf_counter()
    try:
        writers = open_writers(outputs, settings, tokenizer.vocab_size, tokenizer_fingerprint(tokenizer_dir))
        encode_ranges(ranges, writers, settings, workers, stats, strict, block_bytes, bar)
        if stats.documents_written == 0:  # e.g. a wrong --json-keys; megatron cannot read an empty shard
            stats.seconds = time.perf_counter() - start
            raise UserError(f"no documents written, nothing to serialize:\n{stats.summary()}")
        for key, writer in writers.items():
            writer.commit()
            stats.tokens[key] = writer.tokens
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    stats.seconds = time.perf_counter() - start
    return stats


def _progress_bar(total_bytes: int, enabled: bool) -> Optional[object]:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total_bytes, unit="B", unit_scale=True, desc="serialize", mininterval=0.5)
