"""The chunked output layer + cross-entropy (hyperclova/parallel/loss.py): the loss and both
gradients equal the plain `F.cross_entropy(h @ W.T)` within fp32 tolerance, and at vocabulary
64k, sequence 2048, micro-batch 8 its peak memory is at least 4x smaller."""
import pytest
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

from hyperclova.parallel.accounting import PeakLiveBytes
from hyperclova.parallel.loss import full_logits, linear_cross_entropy


def plain(h, w, labels):
    return F.cross_entropy((h @ w.T).flatten(0, 1).float(), labels.flatten(), ignore_index=-100)


def operands(vocab=64000, batch=2, seq=96, d=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(batch, seq, d, generator=g, requires_grad=True)
    w = (torch.randn(vocab, d, generator=g) * 0.5).requires_grad_()
    labels = torch.randint(0, vocab, (batch, seq), generator=g)
    labels[0, :7] = -100  # masked positions count neither in the sum nor in the mean
    return h, w, labels


def grads(fn, h, w, labels):
    h.grad = w.grad = None
    loss = fn(h, w, labels)
    loss.backward()
    return loss.detach(), h.grad.clone(), w.grad.clone()


@pytest.mark.parametrize("chunk", [7, 50, 1024, 0])
def test_equals_plain_cross_entropy(chunk):
    """Loss, d/dh and d/dW within fp32 rounding of the plain computation: each is as close to a
    float64 reference as the plain fp32 one is (sums over 64,000 vocabulary terms round)."""
    h, w, labels = operands()
    want = grads(plain, h, w, labels)
    got = grads(lambda *a: linear_cross_entropy(*a, chunk=chunk), h, w, labels)
    h64, w64 = (t.detach().double().requires_grad_() for t in (h, w))
    exact = grads(lambda a, b, c: F.cross_entropy((a @ b.T).flatten(0, 1), c.flatten()),
                  h64, w64, labels)
    for a, b, x in zip(got, want, exact):
        scale = x.abs().max().item()
        plain_err = (b.double() - x).abs().max().item() / scale
        ours_err = (a.double() - x).abs().max().item() / scale
        assert ours_err <= max(4 * plain_err, 1e-6), (ours_err, plain_err)


def test_frozen_head_gets_no_gradient_and_no_weight_sized_buffer():
    """LoRA and P-tuning freeze the output layer: d/dh is unchanged, W gets no gradient, and the
    forward allocates no weight-sized fp32 gradient buffer."""
    h, w, labels = operands(vocab=8000)
    _, want_h, _ = grads(lambda *a: linear_cross_entropy(*a, chunk=50), h, w, labels)
    w.requires_grad_(False)
    h.grad = w.grad = None
    with PeakLiveBytes() as frozen:
        linear_cross_entropy(h, w, labels, chunk=50).backward()
    assert w.grad is None and torch.equal(h.grad, want_h)
    w.requires_grad_(True)
    with PeakLiveBytes() as trained:
        linear_cross_entropy(h, w, labels, chunk=50).backward()
    assert trained.peak - frozen.peak >= w.numel() * 4


def test_bf16_autocast_matches_autocast_linear():
    h, w, labels = operands(vocab=512)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = plain(h, w, labels)
        got = linear_cross_entropy(h, w, labels, chunk=64)
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)


def test_full_logits_are_the_projection():
    h, w, _ = operands(vocab=300)
    logits = full_logits(h, w)
    assert logits.dtype == torch.float32 and logits.shape == (2, 96, 300)
    torch.testing.assert_close(logits, (h @ w.T).detach())


def test_peak_memory_drops_at_least_4x_at_vocab_64k_seq_2048_batch_8():
    """Bytes of every tensor alive at once, forward and backward, counted on fake tensors
    (shapes and dtypes only: no memory or time spent). d_model 1024 (350M), fp32."""
    with FakeTensorMode():
        h = torch.randn(8, 2048, 1024, requires_grad=True)
        w = torch.randn(64000, 1024, requires_grad=True)
        labels = torch.randint(0, 64000, (8, 2048))
        peaks = {}
        for name, fn in [("plain", plain), ("chunked", linear_cross_entropy)]:
            with PeakLiveBytes() as m:
                fn(h, w, labels).backward()
            peaks[name] = m.peak
            h.grad = w.grad = None
    assert peaks["plain"] > 3 * 8 * 2048 * 64000 * 4  # three fp32 logits-sized tensors
    assert peaks["plain"] / peaks["chunked"] >= 4, peaks
