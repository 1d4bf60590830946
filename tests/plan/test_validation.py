"""The throughput model against published results: Megatron-LM on A100 (Narayanan et al. 2021,
Table 1: seq 2048, vocab 51,200, activation recomputation, 312 TFLOP/s peak), Megatron-Core
r0.8.0 on H100 (the model table of the Megatron-LM README: seq 4,096, vocab 131,072, data
parallel 48, 989 TFLOP/s peak), and the 82B run of the HyperCLOVA paper."""
import pytest

from hyperclova.config import ModelConfig
from hyperclova.model.presets import PRESETS
from hyperclova.plan.hardware import Cluster, Efficiency, get_gpu
from hyperclova.plan.search import Job, search

# name, layers, hidden, heads, tp, pp, gpus, batch, published TFLOP/s per GPU
MEGATRON_2021 = [
    ("1.7B", 24, 2304, 24, 1, 1, 32, 512, 137),
    ("18B", 40, 6144, 48, 8, 1, 256, 1024, 135),
    ("145B", 80, 12288, 96, 8, 8, 1536, 2304, 148),
    ("310B", 96, 16384, 128, 8, 16, 1920, 2160, 155),
    ("530B", 105, 20480, 128, 8, 35, 2520, 2520, 163),
]


def megatron_estimate(L, h, a, tp, pp, gpus, batch, eff=Efficiency()):
    cfg = ModelConfig(n_layers=L, d_model=h, n_heads=a, vocab_size=51200, seq_len=2048)
    job = Job(cfg, Cluster(gpus // 8, 8, get_gpu("a100-80gb")), batch, 300e9, eff=eff)
    # the paper's setting: full recomputation, no sequence parallelism, no ZeRO; the planner picks
    # the micro-batch and interleaving, as the authors tuned them
    rows = search(job, tp=[tp], pp=[pp], recompute=("full",), sequence_parallel=(False,),
                  zero=False, micro_batches=(1, 2, 4, 8))
    return max(rows, key=lambda r: r.tflops)


@pytest.mark.parametrize("name,L,h,a,tp,pp,gpus,batch,published", MEGATRON_2021,
                         ids=[p[0] for p in MEGATRON_2021])
def test_within_15_percent_of_megatron(name, L, h, a, tp, pp, gpus, batch, published):
    row = megatron_estimate(L, h, a, tp, pp, gpus, batch)
    assert row.layout.world_size == gpus
    assert abs(row.tflops / published - 1) <= 0.15, (name, row.tflops, published)


# name, layers, hidden, heads, tp, pp, gpus, batch, published MFU (Megatron-Core r0.8.0, H100)
MCORE_H100 = [
    ("1.7B", 24, 2048, 16, 1, 1, 48, 192, 0.41),
    ("7.1B", 30, 4096, 32, 2, 1, 96, 192, 0.47),
    ("16B", 32, 6144, 48, 4, 1, 192, 192, 0.49),
    ("32B", 48, 7168, 56, 8, 1, 384, 192, 0.46),
    ("70B", 84, 8192, 64, 8, 2, 768, 384, 0.42),
    ("177B", 96, 12288, 96, 8, 6, 2304, 1152, 0.44),
    ("462B", 112, 18432, 144, 8, 16, 6144, 3072, 0.47),
]


def h100_estimate(L, h, a, tp, pp, gpus, batch):
    cfg = ModelConfig(n_layers=L, d_model=h, n_heads=a, vocab_size=131072, seq_len=4096)
    job = Job(cfg, Cluster(gpus // 8, 8, get_gpu("h100-80gb")), batch, 1e12)
    rows = search(job, tp=[tp], pp=[pp], recompute=("none", "selective"), micro_batches=(1, 2, 4))
    return max((r for r in rows if r.fits), key=lambda r: r.mfu)


@pytest.mark.parametrize("name,L,h,a,tp,pp,gpus,batch,published", MCORE_H100,
                         ids=[p[0] for p in MCORE_H100])
def test_h100_mfu_near_megatron_core(name, L, h, a, tp, pp, gpus, batch, published):
    """Within 20% of every row; the named reference point, 7.1B on 96 H100 (TP 2, 47% MFU), within
    10%. The model is low for TP 8 (Megatron-Core overlaps TP communication with compute,
    --tp-comm-overlap; the planner counts it as exposed)."""
    row = h100_estimate(L, h, a, tp, pp, gpus, batch)
    assert row.layout.world_size == gpus
    assert abs(row.mfu / published - 1) <= (0.10 if name == "7.1B" else 0.20), (name, row.mfu)


def test_the_model_can_fail():
    """With a quarter of the GEMM efficiency the same check must fail: the test has teeth."""
    row = megatron_estimate(80, 12288, 96, 8, 8, 1536, 2304, Efficiency(gemm_max=0.7 / 4))
    assert abs(row.tflops / 148 - 1) > 0.15


def test_82b_on_1024_a100_next_to_reported_days(capsys):
    """HyperCLOVA reports 13.4 days for 150B tokens of 82B on 1,024 A100s; print ours beside."""
    job = Job(PRESETS["82b"], Cluster(128, 8, get_gpu("a100-80gb")), 1024, 150e9)
    best = search(job)[0]
    assert best.fits and best.layout.world_size == 1024
    with capsys.disabled():
        print(f"\n82B, 1,024 A100-80GB, 150B tokens: planner {best.days:.1f} days at "
              f"MFU {best.mfu:.0%} vs reported 13.4 days (implied MFU "
              f"{best.mfu * best.days / 13.4:.0%})")
    # an estimate, not a fit: the paper's run was slower than an ideal Megatron layout, but the
    # same order of magnitude
    assert 13.4 / 4 < best.days < 13.4 * 1.5
