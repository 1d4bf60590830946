"""The throughput model against Megatron-LM's published A100 results (Narayanan et al. 2021,
Table 1: seq 2048, vocab 51,200, activation recomputation, 312 TFLOP/s peak), and the 82B run."""
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
