"""Helpers shared by the data tests (importable from spawned processes, unlike a conftest)."""
from __future__ import annotations

import numpy as np

from hyperclova.data.indexed import ShardWriter


def write_shard(prefix: str, docs: list[np.ndarray], dtype=np.uint16, vocab_size: int | None = None,
                chunk: int = 7, tokenizer_fingerprint: str | None = None) -> str:
    """Write `docs` as a shard in batches of `chunk` documents; returns the prefix."""
    writer = ShardWriter(prefix, dtype, vocab_size=vocab_size, tokenizer_fingerprint=tokenizer_fingerprint)
    for i in range(0, len(docs), chunk):
        part = docs[i : i + chunk]
        lengths = np.array([len(d) for d in part], dtype=np.int32)
        flat = np.concatenate(part) if part else np.zeros(0, dtype)
        writer.add_documents(flat.astype(dtype), lengths)
    writer.commit()
    return prefix


def random_docs(n: int, low: int, high: int, seed: int, max_len: int = 60) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(low, high, size=int(rng.integers(1, max_len))) for _ in range(n)]
