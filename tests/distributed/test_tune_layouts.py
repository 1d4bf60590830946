"""Tuning in every kind of layout computes what one process computes (docs/tune.md): LoRA and
P-tuning under tensor parallelism (P-tuning with sequence parallelism: the prompt embeddings are
placed before the sequence is split), pipeline parallelism (P-tuning's encoder on the first stage,
the loss on the last: gradients flow back to the input embeddings through the pipeline) and FSDP
give the same losses, the same gradients of every adapter parameter, the same adapter weights
after four SGD steps and the same forward_eval results; the frozen base is bitwise unchanged
everywhere. One torchrun launch runs every case."""
from __future__ import annotations

import pytest
import torch

from dist_harness import BASE, launch
from tune_harness import tune_steps
from hyperclova.config import load_config
from hyperclova.train.engine import build_engine
from hyperclova.tune.adapters import model_transforms

REL = 1e-5
LORA = "tune.method=lora;tune.lora.targets=[qkv,proj,fc1,fc2];tune.lora.rank=4"
PTUNING = "tune.method=ptuning;tune.ptuning.template=[3,3]"
CASES = {
    "lora_tp2": f"{LORA};parallel.tp=2",
    "ptuning_tp2_sp": f"{PTUNING};parallel.tp=2;parallel.sequence_parallel=true",
    "lora_pp2": f"{LORA};parallel.pp=2;parallel.schedule=1f1b",
    "ptuning_pp2": f"{PTUNING};parallel.pp=2;parallel.schedule=gpipe",
    "lora_fsdp2": f"{LORA};parallel.dp_shard=2",
    "ptuning_fsdp2_mlp": f"{PTUNING};tune.ptuning.encoder=mlp;parallel.dp_shard=2",
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("tune_layouts")
    proc = launch(2, "tests/distributed/tune_worker.py", str(out),
                  *[f"{k}:{v}" for k, v in CASES.items()], timeout=420)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return {name: [torch.load(out / f"{name}.rank{r}.pt") for r in range(2)] for name in CASES}


_references: dict = {}


def reference(case: str) -> dict:
    """The same procedure in one process (no process group), without the layout overrides."""
    method = ";".join(o for o in CASES[case].split(";") if o.startswith("tune."))
    if method not in _references:
        cfg = load_config(None, BASE + method.split(";"))
        engine = build_engine(cfg, torch.device("cpu"), model_transforms(cfg, torch.device("cpu")))
        _references[method] = tune_steps(engine, cfg, eval_rows=4)  # both dp ranks' rows
    return _references[method]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp(min=1e-12)).item()


@pytest.mark.parametrize("case", list(CASES))
def test_layout_matches_one_process(results, case):
    ref = reference(case)
    covered = set()
    for rank, rec in enumerate(results[case]):
        assert rec["frozen_unchanged"], f"rank {rank}: a frozen base weight changed"
        for got, want in zip(rec["losses"], ref["losses"]):
            assert abs(got - want) <= REL * abs(want), (rank, rec["losses"], ref["losses"])
        for got, want in zip(rec["norms"], ref["norms"]):
            assert abs(got - want) <= REL * abs(want), (rank, rec["norms"], ref["norms"])
        for step, (grads, want) in enumerate(zip(rec["grads"], ref["grads"])):
            for name, g in grads.items():
                assert _rel(g, want[name]) <= REL, f"rank {rank} step {step}: gradient of {name}"
                covered.add(name)
        for name, p in rec["params"].items():
            assert _rel(p, ref["params"][name]) <= REL, f"rank {rank}: {name} after the steps"
        dp = rec["dp_rank"]
        torch.testing.assert_close(rec["forward_eval"], ref["forward_eval"][2 * dp:2 * dp + 2],
                                   rtol=REL, atol=1e-6, msg=f"forward_eval rank {rank}")
    assert covered == set(ref["grads"][0]), f"no rank holds {set(ref['grads'][0]) - covered}"
    assert any(g.abs().max() > 0 for g in ref["grads"][-1].values())
