"""lm-evaluation-harness runs our checkpoint ("hyperclova" model) on local lm-eval task YAMLs."""
from __future__ import annotations

import os

import pytest

from eval_helpers import FIXTURES

# Local files only: datasets and the hub must not look for anything online.
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
lm_eval = pytest.importorskip("lm_eval")

TASKS = FIXTURES / "lm_eval_tasks"


@pytest.fixture(scope="module")
def harness_run(ckpt):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from hyperclova.eval.harness import HyperclovaLM

    lm = HyperclovaLM(checkpoint=ckpt, batch_size=4)
    cwd = os.getcwd()
    os.chdir(TASKS)  # lm-eval resolves data_files against the working directory
    try:
        out = simple_evaluate(model=lm, tasks=["nsmc_local", "korquad_local", "ppl_local"],
                              task_manager=TaskManager(include_path=str(TASKS), include_defaults=False),
                              log_samples=True)
    finally:
        os.chdir(cwd)
    return lm, out


def test_multiple_choice_matches_our_own_runner(harness_run, ckpt):
    from hyperclova.eval import run_evaluation

    _, out = harness_run
    acc = out["results"]["nsmc_local"]["acc,none"]
    ours = run_evaluation(ckpt, "nsmc", [str(FIXTURES / "ratings_test.txt")], shots=0,
                          log=lambda *a, **k: None)
    # same template, same choices, 0-shot: the same predictions
    assert 100 * acc == pytest.approx(ours["metrics"]["accuracy"]["mean"])


def test_generation_and_rolling_loglikelihood_are_our_scorer(harness_run):
    import json

    lm, out = harness_run
    samples = out["samples"]["korquad_local"]
    prompts = [s["arguments"][0][0] for s in samples]
    gens = [s["resps"][0][0] for s in samples]
    assert gens == lm.scorer.generate(prompts, ["\n"], 8)
    assert "exact_match,none" in out["results"]["korquad_local"]
    texts = [json.loads(line)["text"] for line in (TASKS / "ppl_local.jsonl").read_text("utf-8").splitlines()]
    lls = [s["resps"][0][0] for s in out["samples"]["ppl_local"]]
    for text, ll in zip(texts, lls):
        assert ll == pytest.approx(lm.scorer.rolling_loglikelihood(lm.scorer.tok.encode(text))[0], abs=1e-4)
    assert out["results"]["ppl_local"]["bits_per_byte,none"] > 0


def test_registered_under_its_name():
    from lm_eval.api.registry import get_model

    import hyperclova.eval.harness as h

    assert get_model("hyperclova") is h.HyperclovaLM
