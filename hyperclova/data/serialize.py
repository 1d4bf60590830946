"""JSONL or plain text in, Megatron `.bin/.idx` shards out: the library behind
`tools/preprocess_data.py`.

    stats = preprocess(["corpus.jsonl"], "data/news", tokenizer_dir="tok/", workers=8, append_eod=True)
    print(stats.summary())

One reading process cuts the input into ~1 MB blocks of whole lines and streams them to `workers`
processes, which decode, check and batch-encode whole blocks (see `records.py`); results come back
in input order as flat token arrays and are appended to the shards. At most a few blocks per worker
are in flight, so memory does not grow with the input. Bad lines are skipped and counted by reason
(or, with `strict`, stop the run at the first one); each shard appears under its final name only
once complete.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from hyperclova.data import records
from hyperclova.data.indexed import dtype_for_vocab, shard_prefix
from hyperclova.errors import UserError

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".txt": "text"}
DEFAULT_BLOCK_BYTES = 1 << 20


@dataclass
class PreprocessStats:
    files: list[str]
    outputs: dict[str, str]  # json key -> shard prefix
    dtype: str
    bytes_read: int = 0
    documents_read: int = 0
    documents_written: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> "file:line: detail"
    seconds: float = 0.0

    @property
    def documents_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        secs = max(self.seconds, 1e-9)
        out = [
            f"documents read {self.documents_read:,} = written {self.documents_written:,}"
            f" + skipped {self.documents_skipped:,}",
        ]
        for reason in records.REASONS:
            if self.skipped.get(reason):
                out.append(f"  skipped, {records.REASONS[reason]}: {self.skipped[reason]:,}")
                out += [f"    {where}" for where in self.examples.get(reason, [])]
        for key, prefix in self.outputs.items():
            if key in self.tokens:  # committed
                out.append(f"wrote {prefix}.bin/.idx: {self.tokens.get(key, 0):,} {self.dtype} tokens ('{key}')")
        out.append(
            f"{len(self.files)} file(s), {self.bytes_read / 1e6:,.1f} MB in {self.seconds:.1f} s:"
            f" {self.documents_read / secs:,.0f} docs/s, {self.bytes_read / 1e6 / secs:.2f} MB/s"
        )
        return "\n".join(out)


def expand_inputs(inputs: Sequence[str], input_format: str = "auto") -> tuple[list[str], list[str]]:
    """Files (directories expand to their .jsonl/.json/.ndjson/.txt files, sorted) and formats."""
    files: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in FORMATS)
            if not found:
                raise UserError(f"input directory {item} has no {'/'.join(FORMATS)} files")
            files += [str(p) for p in found]
        elif path.is_file():
            files.append(str(path))
        else:
            raise UserError(f"input {item} does not exist")
    formats = []
    for f in files:
        fmt = input_format if input_format != "auto" else FORMATS.get(Path(f).suffix)
        if fmt not in ("jsonl", "text"):
            raise UserError(f"{f}: cannot tell the format from the extension; pass --input-format jsonl|text")
        formats.append(fmt)
    return files, formats


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
) -> PreprocessStats:
    """Serialize `inputs` into one shard per json key; see the module docstring."""
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    keys = list(json_keys)
    if not keys or len(set(keys)) != len(keys):
        raise UserError(f"--json-keys must name distinct keys, got {keys}")
    files, formats = expand_inputs(inputs, input_format)
    if "text" in formats and len(keys) > 1:
        raise UserError("plain text input has one document per line: give a single --json-keys name")
    tokenizer = _load_tokenizer(tokenizer_dir)
    if append_eod and tokenizer.eod_id is None:
        raise UserError(f"--append-eod: tokenizer {tokenizer_dir} has no end-of-document token")
    dtype = np.dtype(dtype_for_vocab(tokenizer.vocab_size))
    outputs = {key: shard_prefix(output_prefix, key) for key in keys}
    stats = PreprocessStats(files=files, outputs=outputs, dtype=dtype.name)
    total_bytes = sum(os.path.getsize(f) for f in files)

    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    init_args = (tokenizer_dir, keys, append_eod, dtype.name)
    # A process pool that reports a killed worker (e.g. by the OOM killer) as BrokenProcessPool
    # instead of waiting forever, as multiprocessing.Pool would.
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=records.init_worker, initargs=init_args)
    writers: dict = {}
    bar = None
    try:
        # The first task starts the workers: they fork before the shard writers import
        # megatron-core (and torch), and a tokenizer that fails to load in them fails here.
        pool.submit(records.worker_ready).result()
        from hyperclova.data.indexed import ShardWriter

        writers = {k: ShardWriter(p, dtype.type, vocab_size=tokenizer.vocab_size) for k, p in outputs.items()}
        bar = _progress_bar(total_bytes, progress)
        start = time.perf_counter()  # after the one-off imports, which do not scale with input
        window: deque = deque()
        for block in records.read_blocks(files, formats, block_bytes):
            window.append(pool.submit(records.encode_block, block))
            if len(window) > 2 * workers:
                _consume(window.popleft().result(), writers, stats, strict, bar, start)
        while window:
            _consume(window.popleft().result(), writers, stats, strict, bar, start)
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
        pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
    stats.seconds = time.perf_counter() - start
    return stats


def _load_tokenizer(tokenizer_dir: str):
    from hyperclova.tokenizer import load_tokenizer

    if not Path(tokenizer_dir).is_dir():
        raise UserError(f"--tokenizer {tokenizer_dir} is not a directory")
    return load_tokenizer(tokenizer_dir)


def _consume(result: records.BlockResult, writers, stats: PreprocessStats, strict: bool, bar, start) -> None:
    path = stats.files[result.file_index]
    if strict and result.skip_examples:
        first = min(result.skip_examples, key=lambda s: s.line)
        raise UserError(f"{path}:{first.line}: {records.REASONS[first.reason]} ({first.detail}); "
                        f"drop --strict to skip and count such lines")
    for key, writer in writers.items():
        writer.add_documents(result.tokens[key], result.lengths[key])
    stats.bytes_read += result.nbytes
    stats.documents_read += result.lines
    stats.documents_written += result.written
    for reason, n in result.skip_counts.items():
        stats.skipped[reason] = stats.skipped.get(reason, 0) + n
    for skip in result.skip_examples:
        kept = stats.examples.setdefault(skip.reason, [])
        if len(kept) < records.EXAMPLES_PER_REASON:
            kept.append(f"{path}:{skip.line}: {skip.detail}")
    if bar is not None:
        bar.update(result.nbytes)
        rate = stats.documents_read / max(time.perf_counter() - start, 1e-9)
        bar.set_postfix_str(f"{stats.documents_read:,} docs, {rate:,.0f} docs/s", refresh=False)


def _progress_bar(total_bytes: int, enabled: bool) -> Optional[object]:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total_bytes, unit="B", unit_scale=True, desc="serialize", mininterval=0.5)
