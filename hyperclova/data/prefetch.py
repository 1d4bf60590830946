"""The trainer's batches, assembled ahead of time in a background thread.

A step takes n_micro micro-batches from the loader and stacks them into one (n_micro*micro, T)
batch, labels of masked positions set to the loss's IGNORE. The thread does that (and the
dataset's own reads) while the device computes the previous step; on a GPU the batch is pinned,
so the copy to the device is asynchronous (`non_blocking`). The order of batches is the
loader's, so resuming from `consumed_samples` is unaffected by reading ahead.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator

import torch

from hyperclova.errors import UserError
from hyperclova.parallel.loss import IGNORE


def assemble(loader: Iterator[dict], n_micro: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n_micro micro-batches stacked into one batch; masked labels -> IGNORE."""
    tokens, labels = [], []
    for _ in range(n_micro):
        try:
            mb = next(loader)
        except StopIteration:
            raise UserError("the training data ran out before train.steps; add data or lower "
                            "train.steps") from None
        lab = mb["labels"].clone()
        if "loss_mask" in mb:
            lab[mb["loss_mask"] == 0] = IGNORE
        tokens.append(mb["tokens"])
        labels.append(lab)
    return torch.cat(tokens), torch.cat(labels)


class Prefetcher:
    """Batches of `n_micro` micro-batches from `loader`, prepared `depth` steps ahead."""

    def __init__(self, loader: Iterator[dict], n_micro: int, device: torch.device, depth: int = 2):
        self.device = device
        self.pin = device.type == "cuda"
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(loader, n_micro), daemon=True,
                                        name="batch-prefetch")
        self._thread.start()

    def _run(self, loader, n_micro) -> None:
        try:
            while not self._stop.is_set():
                batch = assemble(loader, n_micro)
                if self.pin:
                    batch = tuple(t.pin_memory() for t in batch)
                self._put(batch)
        except BaseException as e:  # handed to the consumer, raised at the step that needs it
            self._put(e)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return tuple(t.to(self.device, non_blocking=True) for t in item)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
