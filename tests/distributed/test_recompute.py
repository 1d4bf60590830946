"""Activation recompute cuts the bytes kept for backward (docs/parallel.md) and changes no gradient.

Bytes are counted with `saved_tensors_hooks` (each storage once). Selective recompute keeps the
outputs of the ops its policy marks MUST_SAVE in checkpoint's own cache, which those hooks do not
see; they are counted by running the block under a dispatch mode that applies the same policy.
"""
import pytest
import torch
from torch.autograd.graph import saved_tensors_hooks
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.checkpoint import CheckpointPolicy

from hyperclova.config import load_config
from hyperclova.model.gpt import build_model
from hyperclova.parallel.recompute import _selective_policy, apply_recompute

CFG = load_config(None, ["model=tiny", "model.seq_len=64"]).model


class PolicyKept(TorchDispatchMode):
    """Sums the output bytes of the ops the selective policy keeps."""

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if _selective_policy(None, func) == CheckpointPolicy.MUST_SAVE:
            self.bytes += sum(t.untyped_storage().nbytes() for t in tree_flatten(out)[0]
                              if isinstance(t, torch.Tensor))
        return out


def run_blocks(mode: str):
    model = build_model(CFG, seed=0)
    apply_recompute(model, mode)
    x = torch.randn(2, 64, CFG.d_model, generator=torch.Generator().manual_seed(0),
                    requires_grad=True)
    seen, total = set(), [0]

    def pack(t):
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total[0] += t.untyped_storage().nbytes()
        return t

    with saved_tensors_hooks(pack, lambda t: t):
        h = x
        for block in model.layers.values():
            h = block(h)
    h.pow(2).mean().backward()
    grads = {n.replace("_checkpoint_wrapped_module.", ""): p.grad.clone()
             for n, p in model.layers.named_parameters()}
    saved = total[0]
    if mode == "selective":
        kept = PolicyKept()
        with torch.no_grad(), kept:
            h = x.detach()
            for block in model.layers.values():
                h = block(h)
        saved += kept.bytes
    return saved, grads


@pytest.fixture(scope="module")
def measured():
    return {mode: run_blocks(mode) for mode in ("none", "selective", "full")}


def test_full_recompute_saves_at_most_a_quarter(measured):
    none, full = measured["none"][0], measured["full"][0]
    assert full <= none / 4, (full, none)


def test_selective_recompute_saves_less_than_none(measured):
    assert measured["full"][0] < measured["selective"][0] < measured["none"][0]


@pytest.mark.parametrize("mode", ["selective", "full"])
def test_recompute_changes_no_gradient(measured, mode):
    for name, grad in measured["none"][1].items():
        torch.testing.assert_close(measured[mode][1][name], grad, rtol=1e-6, atol=1e-7)
