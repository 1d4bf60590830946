"""Pipeline stages cut from the plain model: every parameter lands on exactly one stage, under
the full model's name, and stages are placed on ranks in a loop."""
import pytest
import torch

from hyperclova.config import load_config
from hyperclova.model.gpt import GPT
from hyperclova.parallel.accounting import memory_bytes
from hyperclova.parallel.layout import Layout
from hyperclova.parallel.pipeline import cut_stage

CFG = load_config(None, ["model=tiny", "model.n_layers=8"]).model


def meta_model():
    with torch.device("meta"):
        return GPT(CFG)


@pytest.mark.parametrize("n_stages", [1, 2, 4, 8])
def test_stages_partition_the_model(n_stages):
    full = {n: p.shape for n, p in meta_model().named_parameters()}
    seen = {}
    model = meta_model()
    for s in range(n_stages):
        for name, p in cut_stage(model, s, Layout(pp=n_stages)).named_parameters():
            assert name not in seen or (name == "lm_head.weight"), name
            seen[name] = p.shape
    # The last stage holds the output weight apart from the embedding when n_stages > 1.
    extra = {"lm_head.weight"} if n_stages > 1 else set()
    assert set(seen) == set(full) | extra
    assert all(seen[n] == full[n] for n in full)
    assert len(model.layers) == 8  # cutting copies; the model itself is whole


def test_stage_placement_loops_over_ranks():
    assert [Layout(pp=2, vpp=2).stage_ids(r) for r in range(2)] == [[0, 2], [1, 3]]
    assert [Layout(pp=4).stage_ids(r) for r in range(4)] == [[0], [1], [2], [3]]
    assert Layout(pp=2, vpp=2).rank_layers(1, 8) == [[2, 3], [6, 7]]


def test_memory_accounting_counts_local_bytes_once():
    model = meta_model()
    n = sum(p.numel() for p in model.parameters())  # the tied weight once
    mem = memory_bytes([model])
    assert mem == {"params": 4 * n, "grads": 4 * n, "optim": 8 * n}
