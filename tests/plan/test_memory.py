"""Activation and parameter memory against Korthikanti et al. 2022 and the model's own count."""
import pytest

from hyperclova.model.presets import PRESETS, count_params
from hyperclova.plan.layout import Layout
from hyperclova.plan.memory import (
    activation_bytes,
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


def test_head_stage_adds_logits():
    lay = Layout(tp=8, pp=8)
    extra = activation_bytes(CFG, lay, 7, 64) - inflight_layers(CFG, lay, 7, 64) * \
        layer_activation_bytes(CFG, lay)
    assert extra == pytest.approx(4 * S * H / 8 * (1 + CFG.vocab_size / H))


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
