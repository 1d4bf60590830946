"""Every layout computes what one process computes (docs/parallel.md): every layout starts from
bit-identical weights; the loss and every parameter's gradient after one step, the clipped-
gradient norms and the losses of five further SGD steps match a single-process run within 1e-5
relative. The layouts accumulate gradients over micro-batches while the reference takes the
global batch at once, so this also shows that accumulation equals one big batch.

One torchrun launch per world size runs all of its layouts (importing torch dominates the time).
"""
from __future__ import annotations

import pytest
import torch

from dist_harness import BASE, inference, launch, train_steps
from hyperclova.config import load_config
from hyperclova.train.checkpoint import finalize_step_dir, single_process
from hyperclova.train.engine import build_engine

REL = 1e-5
# world size -> {case: overrides}; recompute variants ride along to show they change nothing.
MATRIX = {
    2: {
        "tp2": "parallel.tp=2",
        "tp2_sp": "parallel.tp=2,parallel.sequence_parallel=true,parallel.recompute=selective",
        "pp2_gpipe": "parallel.pp=2,parallel.schedule=gpipe",
        "pp2_1f1b": "parallel.pp=2,parallel.schedule=1f1b,parallel.recompute=full",
        "pp2_interleaved": "parallel.pp=2,parallel.vpp=2,parallel.schedule=interleaved_1f1b",
        "dp2_ddp": "parallel.dp_replicate=2",
        "dp2_fsdp": "parallel.dp_shard=2,parallel.recompute=full",
        "dp2_fsdp_zero2": "parallel.dp_shard=2,parallel.zero_stage=2",
    },
    4: {
        "tp2_dp2": "parallel.tp=2,parallel.dp_replicate=2",
        "tp2_fsdp2_sp": "parallel.tp=2,parallel.dp_shard=2,parallel.sequence_parallel=true",
        "pp2_tp2": "parallel.pp=2,parallel.tp=2,parallel.sequence_parallel=true",
        # HSDP: the shipped multi-node layout of configs/6.9b.yaml and 13b.yaml
        "hsdp_2x2": "parallel.dp_replicate=2,parallel.dp_shard=2,train.micro_batch_size=1",
    },
    8: {
        "pp2_dp2_tp2": "parallel.pp=2,parallel.dp_shard=2,parallel.tp=2,"
                       "parallel.sequence_parallel=true",
    },
}
# The longer matrix: `pytest -m slow tests/distributed`.
SLOW = {
    2: {
        "pp2_interleaved_zb": "parallel.pp=2,parallel.vpp=2,parallel.schedule=interleaved_zb",
        "pp2_looped_bfs": "parallel.pp=2,parallel.vpp=2,parallel.schedule=looped_bfs",
        # torch.compile per block (inductor needs a C compiler on CPU)
        "tp2_sp_compile": "parallel.tp=2,parallel.sequence_parallel=true,parallel.compile=true",
        "dp2_fsdp_compile": "parallel.dp_shard=2,parallel.compile=true",
    },
    4: {
        "pp4_1f1b": "parallel.pp=4,parallel.schedule=1f1b,train.micro_batch_size=1",
        "pp2_ddp2_interleaved": "parallel.pp=2,parallel.dp_replicate=2,parallel.vpp=2,"
                                "parallel.schedule=interleaved_1f1b,train.micro_batch_size=1",
        "pp2_fsdp2_tp_selective": "parallel.pp=2,parallel.dp_shard=2,parallel.tp=1,"
                                  "parallel.recompute=selective",
    },
    8: {
        "pp2_hsdp_tp2": "parallel.pp=2,parallel.dp_replicate=2,parallel.tp=2,"
                        "parallel.schedule=gpipe",
    },
}


ROWS = 8  # forward_eval: data-parallel rank r scores rows [2r, 2r + 2) of these


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """Weights of another seed, for every layout to load with engine.load_weights."""
    import torch.distributed.checkpoint as dcp

    cfg = load_config(None, BASE + ["train.seed=99"])
    engine = build_engine(cfg, torch.device("cpu"))
    root = tmp_path_factory.mktemp("seed99")
    tmp = root / "step_00000001.tmp"
    with single_process():
        dcp.save({"model": engine.model_state()}, checkpoint_id=str(tmp))
    finalize_step_dir(tmp, root / "step_00000001", cfg, 1)
    return root, inference(engine, rows=ROWS)["forward_eval"]


@pytest.fixture(scope="module")
def reference(checkpoint):
    cfg = load_config(None, BASE)
    engine = build_engine(cfg, torch.device("cpu"))
    assert engine.mesh is None  # one process: the same build path, no process group needed
    record = train_steps(engine, n_micro=1)
    record.update(inference(engine, rows=ROWS))
    record["loaded_eval"] = checkpoint[1]
    return record


def _run(matrix: dict, world: int, out, checkpoint) -> dict[str, list[dict]]:
    cases = [f"{name}:{ov}" for name, ov in matrix[world].items()]
    proc = launch(world, "tests/distributed/equivalence_worker.py", str(out), *cases, timeout=420,
                  env={"EQUIVALENCE_CHECKPOINT": str(checkpoint)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return {name: [torch.load(out / f"{name}.rank{r}.pt") for r in range(world)]
            for name in matrix[world]}


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= REL * abs(b)


def _check(records: list[dict], ref: dict) -> None:
    covered = set()
    for rank, rec in enumerate(records):
        assert all(_close(a, b) for a, b in zip(rec["losses"], ref["losses"])), \
            f"rank {rank}: losses {rec['losses']} != reference {ref['losses']}"
        assert all(_close(a, b) for a, b in zip(rec["norms"], ref["norms"])), \
            f"rank {rank}: grad norms {rec['norms']} != reference {ref['norms']}"
        assert _close(rec["eval"], ref["eval"]), (rec["eval"], ref["eval"])
        # forward_eval returns the reduced logits on every rank, for this dp rank's sequences
        dp = rec["dp_rank"]
        for key in ("forward_eval", "loaded_eval"):
            for got, want in zip(rec[key], ref[key]):
                want = want[2 * dp:2 * dp + 2]
                torch.testing.assert_close(got, want, rtol=REL, atol=1e-6, msg=f"{key} rank {rank}")
        assert rec["missing"] == []
        for name, weight in rec["init"].items():
            key = "tok_emb.weight" if name == "lm_head.weight" else name
            assert torch.equal(weight, ref["init"][key]), f"rank {rank}: initial {name} differs"
        for name, grad in rec["grads"].items():
            # A pipeline stage holding the head without the embedding has its own copy of the
            # tied weight; its gradient must be the embedding's (head + embedding contributions).
            want = ref["grads"]["tok_emb.weight" if name == "lm_head.weight" else name]
            assert grad.shape == want.shape, (name, grad.shape, want.shape)
            err = ((grad - want).abs().max() / want.abs().max()).item()
            assert err <= REL, f"rank {rank}: gradient of {name} differs by {err:.2e} relative"
            covered.add(name)
    missing = set(ref["grads"]) - covered
    assert not missing, f"no rank holds {sorted(missing)}"


def _cases(matrix):
    return [(w, name) for w in matrix for name in matrix[w]]


@pytest.fixture(scope="module")
def results(tmp_path_factory, checkpoint):
    cache = {}

    def get(matrix, world):
        key = (id(matrix), world)
        if key not in cache:
            cache[key] = _run(matrix, world, tmp_path_factory.mktemp(f"w{world}"), checkpoint[0])
        return cache[key]
    return get


@pytest.mark.parametrize("world,case", _cases(MATRIX))
def test_layout_matches_single_process(world, case, results, reference):
    _check(results(MATRIX, world)[case], reference)


@pytest.mark.slow
@pytest.mark.parametrize("world,case", _cases(SLOW))
def test_layout_matches_single_process_slow(world, case, results, reference):
    _check(results(SLOW, world)[case], reference)


def test_accumulation_equals_one_big_batch(reference):
    cfg = load_config(None, BASE)
    accumulated = train_steps(build_engine(cfg, torch.device("cpu")), n_micro=4)
    assert accumulated["losses"] == pytest.approx(reference["losses"], rel=REL)
    for name, grad in reference["grads"].items():
        torch.testing.assert_close(accumulated["grads"][name], grad, rtol=REL, atol=1e-7)
