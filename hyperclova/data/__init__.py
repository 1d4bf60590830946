"""Training data: Megatron indexed shards, blended and split GPT datasets, a resumable loader.

    train, valid = build_datasets(cfg.data, seq_len, seed, train_samples, valid_samples)
    batches = make_loader(train, micro_batch_size, consumed_samples, dp_rank, dp_size)

The names below load on first use, so `hyperclova.data.serialize` (whose worker processes fork
from the importing process) does not pull in torch and megatron-core.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_datasets": "hyperclova.data.dataset",
    "check_blend": "hyperclova.data.dataset",
    "make_loader": "hyperclova.data.loader",
    "check_shard": "hyperclova.data.indexed",
    "merge_shards": "hyperclova.data.indexed",
    "preprocess": "hyperclova.data.serialize",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hyperclova.data' has no attribute {name!r}")
