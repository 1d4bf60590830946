"""Megatron indexed datasets (`.bin` + `.idx`): naming, atomic writing, checking and merging.

Shards are written in the format of megatron-core's `IndexedDatasetBuilder`, byte for byte, and
read back with its `IndexedDataset`; this module adds what a long preprocessing job needs around
them: a shard only appears under its final name once complete, and a shard handed to training is
checked (files, header, sizes, dtype, token ids) with an error that names the file.

Next to each shard we write `{prefix}.meta.json` (token count, largest token id, tokenizer vocab and
fingerprint), so training can check the vocabulary without scanning the `.bin`, and can tell a
shard made with another tokenizer of the same size; shards from elsewhere without one are scanned
instead.
"""
from __future__ import annotations

import array
import glob
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from hyperclova.errors import UserError

log = logging.getLogger(__name__)

_HEADER = b"MMIDIDX\x00\x00"
_HEADER_BYTES = 9 + 8 + 1 + 8 + 8  # magic, version, dtype code, sequence count, document count
_DTYPE_CODES = {8: np.uint16, 4: np.int32}
_CODE_OF_DTYPE = {v: k for k, v in _DTYPE_CODES.items()}
UINT16_VOCAB_LIMIT = 65500  # Megatron's rule (DType.optimal_dtype): uint16 below this vocab size


def dtype_for_vocab(vocab_size: int) -> type[np.number]:
    return np.uint16 if vocab_size < UINT16_VOCAB_LIMIT else np.int32


def shard_prefix(output_prefix: str | os.PathLike, json_key: str) -> str:
    """Megatron's output name: `{prefix}_{key}_document`."""
    return f"{output_prefix}_{json_key}_document"


def meta_path(prefix: str | os.PathLike) -> str:
    return f"{prefix}.meta.json"


@dataclass
class ShardMeta:
    documents: int
    tokens: int
    max_token_id: int  # -1 for an empty shard
    vocab_size: Optional[int]
    dtype: str
    bin_bytes: int  # lets a reader notice a .bin replaced behind the sidecar's back
    idx_bytes: int
    tokenizer_fingerprint: Optional[str] = None  # tokenizer.load.tokenizer_fingerprint of the encoder


# --- writing -----------------------------------------------------------------------------------


class ShardWriter:
    """Write one shard under temporary names; `commit()` renames it into place, `abort()` removes it.

    Writes the same bytes as megatron-core's `IndexedDatasetBuilder` (a test compares them)
    without importing it: megatron-core pulls in torch, which costs the serializer seconds of
    start-up and every worker hundreds of MB, and its `finalize` builds the pointer table one
    Python int at a time. Documents arrive in batches (flat token array + per-document lengths), so
    the caller never makes one Python call per document. The index is held as compact arrays: 12
    bytes per document.
    """

    def __init__(self, prefix: str, dtype: type[np.number], vocab_size: Optional[int] = None,
                 tokenizer_fingerprint: Optional[str] = None):
        self.prefix = prefix
        self.tokenizer_fingerprint = tokenizer_fingerprint
        self.dtype = np.dtype(dtype)
        if self.dtype.type not in _CODE_OF_DTYPE:
            raise ValueError(f"shard dtype must be uint16 or int32, got {self.dtype.name}")
        self.vocab_size = vocab_size
        Path(prefix).parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temporary_prefix(prefix)
        self._bin = open(self._tmp + ".bin", "wb")
        self._lengths = array.array("i")  # tokens per sequence
        self._doc_index = array.array("q", [0])  # sequence index where each document ends
        self.tokens = 0
        self.max_token_id = -1

    @property
    def documents(self) -> int:
        return len(self._doc_index) - 1

    def add_documents(self, tokens: np.ndarray, lengths: np.ndarray) -> None:
        """Append documents: `tokens` holds them back to back, `lengths[i]` tokens each."""
        if len(lengths) == 0:
            return
        self._bin.write(np.ascontiguousarray(tokens, dtype=self.dtype).tobytes())
        first = len(self._lengths)
        self._lengths.frombytes(np.asarray(lengths, dtype=np.int32).tobytes())
        self._doc_index.frombytes(np.arange(first + 1, first + 1 + len(lengths), dtype=np.int64).tobytes())
        self.tokens += int(tokens.size)
        if tokens.size:
            self.max_token_id = max(self.max_token_id, int(tokens.max()))

    def add_shard(self, info: "ShardInfo") -> None:
        """Append a whole existing shard (same dtype, already checked by `check_shard`), as
        megatron-core's `IndexedDatasetBuilder.add_index` does."""
        if info.dtype is not self.dtype.type:
            raise UserError(f"{info.prefix}: {np.dtype(info.dtype).name} tokens, expected {self.dtype.name}")
        offset = len(self._lengths)
        self._lengths.frombytes(np.asarray(sequence_lengths(info.prefix, info.sequences), np.int32).tobytes())
        docs = document_indices(info.prefix, info.sequences, info.documents + 1)
        self._doc_index.frombytes((docs[1:].astype(np.int64) + offset).tobytes())
        with open(info.prefix + ".bin", "rb") as f:
            shutil.copyfileobj(f, self._bin, 1 << 24)
        self.tokens += info.tokens
        self.max_token_id = max(self.max_token_id, info.max_token_id)

    def commit(self) -> ShardMeta:
        """Write the index and move the shard into place; the `.idx` (the "complete" mark) last."""
        self._bin.close()
        lengths = np.frombuffer(self._lengths, dtype=np.int32) if self._lengths else np.zeros(0, np.int32)
        pointers = np.zeros(len(lengths), dtype=np.int64)
        np.cumsum(lengths[:-1].astype(np.int64) * self.dtype.itemsize, out=pointers[1:])
        with open(self._tmp + ".idx", "wb") as f:
            f.write(_HEADER + struct.pack("<QBQQ", 1, _CODE_OF_DTYPE[self.dtype.type], len(lengths),
                                          len(self._doc_index)))
            f.write(lengths.tobytes())
            f.write(pointers.tobytes())
            f.write(np.frombuffer(self._doc_index, dtype=np.int64).tobytes())
        meta = ShardMeta(
            documents=self.documents,
            tokens=self.tokens,
            max_token_id=self.max_token_id,
            vocab_size=self.vocab_size,
            dtype=self.dtype.name,
            bin_bytes=os.path.getsize(self._tmp + ".bin"),
            idx_bytes=os.path.getsize(self._tmp + ".idx"),
            tokenizer_fingerprint=self.tokenizer_fingerprint,
        )
        with open(self._tmp + ".meta.json", "w", encoding="utf-8") as f:
            json.dump(asdict(meta), f, indent=1)
        # Drop an older .idx first: at every instant the final names hold either the old complete
        # pair, a .bin without .idx (visibly incomplete), or the new complete pair.
        if os.path.exists(self.prefix + ".idx"):
            os.unlink(self.prefix + ".idx")
        os.replace(self._tmp + ".bin", self.prefix + ".bin")
        os.replace(self._tmp + ".meta.json", meta_path(self.prefix))
        os.replace(self._tmp + ".idx", self.prefix + ".idx")
        return meta

    def abort(self) -> None:
        if not self._bin.closed:
            self._bin.close()
        for suffix in (".bin", ".idx", ".meta.json"):
            try:
                os.unlink(self._tmp + suffix)
            except FileNotFoundError:
                pass


def temporary_prefix(prefix: str) -> str:
    """Where a shard is written before `commit`: named by host and process, so a later run can tell
    the leftovers of a killed one (`stale_temporaries`) from a live writer's."""
    return f"{prefix}.tmp-{socket.gethostname()}-{os.getpid()}"


def stale_temporaries(prefix: str) -> list[str]:
    """Files a killed writer of `prefix` left behind: those of a dead process on this host."""
    pattern = re.compile(re.escape(prefix) + r"\.tmp-(.+)-(\d+)\.(bin|idx|meta\.json)")
    stale = []
    for path in glob.glob(glob.escape(prefix) + ".tmp-*"):
        m = pattern.fullmatch(path)
        if m and m.group(1) == socket.gethostname() and not _process_alive(int(m.group(2))):
            stale.append(path)
    return stale


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


# --- reading and checking ----------------------------------------------------------------------


@dataclass
class ShardInfo:
    prefix: str
    dtype: type[np.number]
    sequences: int
    documents: int
    tokens: int
    max_token_id: int  # -1 for an empty shard
    tokenizer_fingerprint: Optional[str] = None  # from the sidecar; None when unknown


def strip_shard_suffix(path: str) -> str:
    """`data/x_text_document.bin` (or .idx) -> the shard prefix `data/x_text_document`."""
    return path[:-4] if path.endswith((".bin", ".idx")) else path


def read_header(prefix: str) -> tuple[type[np.number], int, int]:
    idx = prefix + ".idx"
    try:
        with open(idx, "rb") as f:
            head = f.read(_HEADER_BYTES)
    except OSError as e:
        raise UserError(f"cannot read shard index {idx}: {e.strerror}") from None
    if len(head) < _HEADER_BYTES or head[:9] != _HEADER:
        raise UserError(f"{idx}: not a Megatron indexed-dataset index (bad header)")
    version, code, n_seq, n_doc = struct.unpack("<QBQQ", head[9:])
    if version != 1:
        raise UserError(f"{idx}: unsupported index version {version} (expected 1)")
    if code not in _DTYPE_CODES:
        raise UserError(f"{idx}: token dtype code {code} is not uint16 (8) or int32 (4)")
    return _DTYPE_CODES[code], n_seq, n_doc


def _sidecar(prefix: str, bin_bytes: int, idx_bytes: int) -> Optional[dict]:
    """The shard's .meta.json when it describes these very files, else None."""
    try:
        with open(meta_path(prefix), encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("bin_bytes") == bin_bytes and meta.get("idx_bytes") == idx_bytes:
            int(meta["max_token_id"])
            return meta
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def _max_token_id(prefix: str, dtype: type[np.number], bin_bytes: int, idx_bytes: int,
                  sidecar: Optional[dict]) -> int:
    """From the sidecar when there is one, else by scanning the .bin."""
    if sidecar is not None:
        return int(sidecar["max_token_id"])
    log.info("%s.bin has no matching .meta.json: scanning it for its largest token id", prefix)
    tokens = np.memmap(prefix + ".bin", dtype=dtype, mode="r") if bin_bytes else np.empty(0, dtype)
    best = -1
    step = 1 << 26
    for start in range(0, tokens.size, step):
        best = max(best, int(tokens[start : start + step].max()))
    return best


def check_shard(prefix: str, vocab_size: Optional[int] = None,
                tokenizer: Optional[tuple[str, str]] = None) -> ShardInfo:
    """Check that a shard is whole and fits a tokenizer of `vocab_size`; UserError names the file.

    tokenizer: (directory, fingerprint) of the tokenizer training will use; a shard whose sidecar
    records another fingerprint was encoded by another tokenizer (even one of the same size, e.g.
    retrained with `train_tokenizer --overwrite`) and is refused.
    """
    prefix = str(prefix)
    for path in (prefix + ".idx", prefix + ".bin"):
        if not os.path.isfile(path):
            hint = " (an interrupted preprocess_data run leaves no .idx)" if path[-4:] == ".idx" else ""
            raise UserError(f"shard file {path} does not exist{hint}")
    dtype, n_seq, n_doc = read_header(prefix)
    bin_bytes = os.path.getsize(prefix + ".bin")
    idx_bytes = os.path.getsize(prefix + ".idx")
    expected_idx = _HEADER_BYTES + n_seq * (4 + 8) + n_doc * 8
    if idx_bytes < expected_idx:
        raise UserError(f"{prefix}.idx is truncated: {idx_bytes} bytes, header promises {expected_idx}")
    lengths = sequence_lengths(prefix, n_seq)
    tokens = int(lengths.sum(dtype=np.int64))
    itemsize = np.dtype(dtype).itemsize
    if bin_bytes != tokens * itemsize:
        raise UserError(
            f"{prefix}.bin has {bin_bytes} bytes but its .idx describes {tokens} {np.dtype(dtype).name}"
            f" tokens ({tokens * itemsize} bytes): the pair does not belong together or is truncated"
        )
    if tokens == 0:
        raise UserError(f"{prefix}.bin holds no tokens (megatron-core cannot read an empty shard)")
    sidecar = _sidecar(prefix, bin_bytes, idx_bytes)
    max_id = _max_token_id(prefix, dtype, bin_bytes, idx_bytes, sidecar)
    made_with = sidecar.get("tokenizer_fingerprint") if sidecar else None
    info = ShardInfo(prefix, dtype, n_seq, n_doc - 1, tokens, max_id, made_with)
    if tokenizer is not None and made_with is not None and made_with != tokenizer[1]:
        raise UserError(
            f"{prefix}.bin was made with a tokenizer of fingerprint {made_with}, but the tokenizer "
            f"{tokenizer[0]} has fingerprint {tokenizer[1]} (replaced or retrained since?): re-run "
            f"tools/preprocess_data.py with it, or point data.tokenizer at the tokenizer the shard was "
            f"made with"
        )
    if vocab_size is not None:
        want = dtype_for_vocab(vocab_size)
        if dtype is not want:
            raise UserError(
                f"{prefix}.bin stores {np.dtype(dtype).name} tokens but the tokenizer's vocabulary of "
                f"{vocab_size} needs {np.dtype(want).name}: this shard was made with another tokenizer"
                f"; re-run tools/preprocess_data.py with this one"
            )
        if max_id >= vocab_size:
            raise UserError(
                f"{prefix}.bin contains token id {max_id}, outside the tokenizer's vocabulary of "
                f"{vocab_size}: this shard was made with another (larger) tokenizer"
            )
    return info


def sequence_lengths(prefix: str, count: int) -> np.ndarray:
    """The int32 length of each of the `count` sequences, memory-mapped from the .idx."""
    if count == 0:
        return np.zeros(0, np.int32)
    return np.memmap(prefix + ".idx", dtype=np.int32, mode="r", offset=_HEADER_BYTES, shape=(count,))


def document_indices(prefix: str, sequences: int, count: int) -> np.ndarray:
    """The `count` int64 document boundaries (sequence indices), memory-mapped from the .idx."""
    offset = _HEADER_BYTES + sequences * (4 + 8)
    return np.memmap(prefix + ".idx", dtype=np.int64, mode="r", offset=offset, shape=(count,))


def fingerprint(prefixes: Sequence[str]) -> str:
    """A content key for a set of shards (sizes plus the index head and tail), the same on every
    node and every fresh run, and different once a shard is rewritten."""
    h = hashlib.sha1()
    for prefix in prefixes:
        h.update(str(prefix).encode())
        for suffix in (".bin", ".idx"):
            h.update(str(os.path.getsize(prefix + suffix)).encode())
        with open(prefix + ".idx", "rb") as f:
            h.update(f.read(1 << 20))
            f.seek(max(0, os.path.getsize(prefix + ".idx") - (1 << 20)))
            h.update(f.read())
    return h.hexdigest()[:16]


# --- merging -----------------------------------------------------------------------------------


def merge_shards(inputs: Sequence[str], output_prefix: str) -> ShardMeta:
    """Concatenate shards (all of one dtype) into `output_prefix`.bin/.idx, atomically."""
    if not inputs:
        raise UserError("no input shards to merge")
    if Path(output_prefix).resolve() in {Path(p).resolve() for p in inputs}:
        raise UserError(f"output prefix {output_prefix} is also an input")
    infos = [check_shard(p) for p in inputs]  # once: it may scan a .bin without a sidecar
    dtypes = {np.dtype(i.dtype).name for i in infos}
    if len(dtypes) > 1:
        listing = ", ".join(f"{i.prefix} ({np.dtype(i.dtype).name})" for i in infos)
        raise UserError(f"cannot merge shards of different token dtypes: {listing}")
    made_with = {i.tokenizer_fingerprint for i in infos} - {None}
    if len(made_with) > 1:
        listing = ", ".join(f"{i.prefix} ({i.tokenizer_fingerprint})" for i in infos if i.tokenizer_fingerprint)
        raise UserError(f"cannot merge shards made with different tokenizers (fingerprints): {listing}")
    vocab = _common_vocab(inputs)
    common = made_with.pop() if made_with and all(i.tokenizer_fingerprint for i in infos) else None
    writer = ShardWriter(str(output_prefix), infos[0].dtype, vocab_size=vocab, tokenizer_fingerprint=common)
    try:
        for info in infos:
            writer.add_shard(info)
        return writer.commit()
    except BaseException:
        writer.abort()
        raise


def _common_vocab(prefixes: Sequence[str]) -> Optional[int]:
    vocabs = set()
    for prefix in prefixes:
        try:
            with open(meta_path(prefix), encoding="utf-8") as f:
                vocabs.add(json.load(f).get("vocab_size"))
        except (OSError, ValueError):
            vocabs.add(None)
    return vocabs.pop() if len(vocabs) == 1 else None
