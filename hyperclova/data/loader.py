"""Per-rank micro-batches in Megatron's pretraining-sampler order, resumable from a sample count.

The dataset is already shuffled (megatron-core's shuffle index), so the sampler walks it in order:
each global step takes the next `micro_batch_size * dp_size` samples and rank r gets the r-th slice.
Where a run stands is therefore one number, `consumed_samples`, which the trainer checkpoints.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset


class PretrainingSampler:
    """Index batches for one data-parallel rank, starting after `consumed_samples` (all ranks)."""

    def __init__(self, total_samples: int, consumed_samples: int, micro_batch_size: int,
                 dp_rank: int, dp_size: int):
        if micro_batch_size <= 0 or dp_size <= 0 or not 0 <= dp_rank < dp_size:
            raise ValueError(f"bad sampler layout: micro_batch_size={micro_batch_size}, "
                             f"dp_rank={dp_rank}, dp_size={dp_size}")
        if not 0 <= consumed_samples <= total_samples:
            raise ValueError(f"consumed_samples={consumed_samples} is outside the dataset's "
                             f"{total_samples} samples: was the checkpoint made with other data?")
        self.total = total_samples
        self.consumed = consumed_samples
        self.micro = micro_batch_size
        self.rank = dp_rank
        self.global_size = micro_batch_size * dp_size

    def __len__(self) -> int:
        return (self.total - self.consumed) // self.global_size

    def __iter__(self) -> Iterator[list[int]]:
        start = self.consumed + self.rank * self.micro
        # An incomplete last global batch is dropped, as Megatron does: every rank steps together.
        for base in range(start, self.total - self.global_size + self.rank * self.micro + 1, self.global_size):
            yield list(range(base, base + self.micro))


def make_loader(dataset: Dataset, micro_batch_size: int, consumed_samples: int, dp_rank: int,
                dp_size: int, num_workers: int = 0,
                seed: int = 0) -> Iterator[dict[str, torch.Tensor]]:
    """Micro-batches for this rank until the dataset is exhausted; each value is stacked to
    (micro_batch_size, seq_len). Resuming with the same `consumed_samples` continues exactly where
    an uninterrupted run would be.

    The loader draws its workers' base seed from a generator of its own (seeded by `seed`), never
    from torch's global one: that stream drives dropout, and a checkpoint restores it just before
    the loader is made, so one draw here would shift every mask of a resumed run."""
    sampler = PretrainingSampler(len(dataset), consumed_samples, micro_batch_size, dp_rank, dp_size)
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        pin_memory=False,  # the trainer pins the assembled batch (hyperclova/data/prefetch.py)
        persistent_workers=False,
        generator=torch.Generator().manual_seed(seed),
    )
    return iter(loader)
