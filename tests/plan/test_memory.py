"""Activation and parameter memory against Korthikanti et al. 2022, the engine's own output
layer and loss, and the model's own count."""
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from hyperclova.model.presets import PRESETS, count_params
from hyperclova.parallel.accounting import PeakLiveBytes
from hyperclova.parallel.layout import Layout
from hyperclova.parallel.loss import linear_cross_entropy
from hyperclova.plan.memory import (
    activation_bytes,
    head_activation_bytes,
    inflight_layers,
    layer_activation_bytes,
    model_stats,
    rank_params,
)

CFG = PRESETS["82b"]
S, H, A = CFG.seq_len, CFG.d_model, CFG.n_heads


def test_korthikanti_table_2():
    b, t = 1, 8
    sbh = S * b * H
    kw = dict(micro_batch_size=b)
    assert layer_activation_bytes(CFG, Layout(**kw), flash=False) == pytest.approx(
        sbh * (34 + 5 * A * S / H))
    assert layer_activation_bytes(CFG, Layout(tp=t, **kw), flash=False) == pytest.approx(
        sbh * (10 + 24 / t + 5 * A * S / (H * t)))
    assert layer_activation_bytes(CFG, Layout(tp=t, sequence_parallel=True, **kw), flash=False) \
        == pytest.approx(sbh / t * (34 + 5 * A * S / H))
    assert layer_activation_bytes(CFG, Layout(tp=t, sequence_parallel=True, recompute="selective",
                                              **kw), flash=False) == pytest.approx(34 * sbh / t)
    assert layer_activation_bytes(CFG, Layout(tp=t, recompute="full", **kw)) == 2 * sbh
    # flash attention keeps no s x s scores: same as selective recomputation
    assert layer_activation_bytes(CFG, Layout(tp=t, **kw), flash=True) == pytest.approx(
        sbh * (10 + 24 / t))


def test_first_stage_holds_all_layers_worth_in_1f1b():
    lay = Layout(pp=8)
    assert inflight_layers(CFG, lay, 0, n_micro=64) == CFG.n_layers
    assert inflight_layers(CFG, lay, 7, n_micro=64) == CFG.n_layers / 8
    assert inflight_layers(CFG, lay, 0, n_micro=2) == 2 * CFG.n_layers / 8  # fewer micro-batches
    # interleaved: L (1 + (p - 1) / (p v)), Korthikanti et al. Section 4.2.3
    assert inflight_layers(CFG, Layout(pp=8, vpp=2), 0, 64) == pytest.approx(
        CFG.n_layers * (1 + 7 / 16))


def test_head_stage_adds_the_output_layer_and_loss():
    lay = Layout(tp=8, pp=8)
    extra = activation_bytes(CFG, lay, 7, 64) - inflight_layers(CFG, lay, 7, 64) * \
        layer_activation_bytes(CFG, lay)
    assert extra == pytest.approx(head_activation_bytes(CFG, lay))
    assert activation_bytes(CFG, lay, 0, 64) == inflight_layers(CFG, lay, 0, 64) * \
        layer_activation_bytes(CFG, lay)  # the first stage has no head


@pytest.mark.parametrize("chunk", [1024, 0])
def test_head_bytes_match_the_loss_itself(chunk):
    """The planner's head term against the peak of live tensors while the engine's output layer
    and loss run forward and backward (350M, micro-batch 8, bf16 autocast, on fake tensors: the
    bytes of every op's output, no memory or time spent)."""
    cfg, b = PRESETS["350m"], 8
    with FakeTensorMode():
        h = torch.randn(b, cfg.seq_len, cfg.d_model, dtype=torch.bfloat16, requires_grad=True)
        w = torch.randn(cfg.vocab_size, cfg.d_model, requires_grad=True)
        labels = torch.randint(0, cfg.vocab_size, (b, cfg.seq_len))
        with PeakLiveBytes() as peak:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = linear_cross_entropy(h, w, labels, chunk)
            loss.backward()
    # the LayerNorm's input and the hidden states exist before the loss starts
    planned = head_activation_bytes(cfg, Layout(micro_batch_size=b), chunk) \
        - 4 * b * cfg.seq_len * cfg.d_model
    assert peak.peak == pytest.approx(planned, rel=0.15)


@pytest.mark.parametrize("name", ["137m", "1.3b", "82b"])
def test_rank_params_sum_to_count_params(name):
    cfg = PRESETS[name]
    stats = model_stats(cfg)
    assert stats.total == count_params(cfg)
    assert rank_params(stats, Layout(), 0) == count_params(cfg)
    lay = Layout(tp=4, pp=4)
    total = sum(rank_params(stats, lay, r) for r in range(4)) * 4
    replicated = (cfg.n_layers * stats.layer_replicated + stats.pos_emb + stats.final_norm) * 3
    assert total - replicated - stats.tok_emb == count_params(cfg)  # minus the head's copy
