"""A small Megatron shard of learnable documents, shared by the trainer, MPI and distributed tests
(`tests/` is on sys.path: pytest puts the root conftest's folder there)."""
import numpy as np
import torch


def write_shard(prefix, n_docs=300, vocab=256, seed=0) -> str:
    """Arithmetic token sequences with random starts and strides: easy to learn, so a few steps of
    a tiny model show the loss falling."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    rng = np.random.default_rng(seed)
    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=np.uint16)
    for _ in range(n_docs):
        start, stride, length = rng.integers(1, vocab), rng.integers(1, 4), rng.integers(20, 80)
        doc = (start + stride * np.arange(length)) % (vocab - 1) + 1
        builder.add_document(torch.from_numpy(doc.astype(np.int64)), [length])
    builder.finalize(f"{prefix}.idx")
    return str(prefix)
