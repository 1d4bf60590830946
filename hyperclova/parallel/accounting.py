"""What each rank holds: parameter, gradient and optimizer-state bytes of its local shards.

Computed from the local shard sizes at start-up (before the first step allocates gradients and
AdamW state), so a layout's memory can be read off the log before it runs out of it.
"""
from __future__ import annotations

import torch.nn as nn
from torch.distributed.tensor import DTensor

ADAMW_STATES = 2  # exp_avg and exp_avg_sq, each the size and dtype of the (local) parameter


def local_tensor(t):
    return t.to_local() if isinstance(t, DTensor) else t


def memory_bytes(model_parts: list[nn.Module]) -> dict[str, int]:
    """Bytes of this rank's parameters, their gradients and AdamW's state."""
    seen, params = set(), 0
    for m in model_parts:
        for p in m.parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            local = local_tensor(p)
            params += local.numel() * local.element_size()
    return {"params": params, "grads": params, "optim": ADAMW_STATES * params}


def format_memory(rank: int, layout: str, mem: dict[str, int]) -> str:
    mib = {k: v / 2**20 for k, v in mem.items()}
    total = sum(mib.values())
    return (f"rank {rank} [{layout}]: params {mib['params']:.1f} MiB, grads {mib['grads']:.1f} MiB, "
            f"optimizer state {mib['optim']:.1f} MiB (total {total:.1f} MiB before activations)")


class PeakLiveBytes:
    """Peak bytes of tensor storages alive at once among those created inside the `with` block
    (forward, backward and kernels' outputs alike): a device-independent measure of what an
    activation costs, e.g. the output layer and loss (tests and bench/bench_loss.py)."""

    def __init__(self):
        self.live = self.peak = 0
        self._refs: dict[int, object] = {}

    def __enter__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        tracker = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                for t in _tensors(out):
                    tracker._track(t.untyped_storage())
                return out

        self._mode = _Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        self._mode.__exit__(*exc)

    def _track(self, storage) -> None:
        import weakref

        key = storage._cdata
        if key in self._refs:
            return
        size = storage.nbytes()

        def freed(_ref, key=key, size=size):
            self._refs.pop(key, None)
            self.live -= size

        self._refs[key] = weakref.ref(storage, freed)
        self.live += size
        self.peak = max(self.peak, self.live)


def _tensors(out):
    import torch
    from torch.utils._pytree import tree_flatten

    return [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
