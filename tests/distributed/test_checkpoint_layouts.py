"""A checkpoint written in one layout loads into another and training continues with the losses
it would have had without the change (docs/parallel.md), through the real CLI under torchrun."""
from __future__ import annotations

import re

import pytest

from dist_harness import launch, train_losses, trainer_overrides
from toy_shard import write_shard
from hyperclova.config import load_config
from hyperclova.train.trainer import train

REL = 1e-5
SINGLE = None  # run in this process
PAIRS = {  # name: (layout before the checkpoint, layout after): (nproc, overrides)
    "pp2xtp2_to_single": ((4, ["parallel.pp=2", "parallel.tp=2"]), (SINGLE, [])),
    "single_to_tp2xdp2": ((SINGLE, []), (4, ["parallel.tp=2", "parallel.dp_replicate=2"])),
    "pp2_to_fsdp2": ((2, ["parallel.pp=2"]), (2, ["parallel.dp_shard=2"])),
    "fsdp2_to_pp2": ((2, ["parallel.dp_shard=2"]), (2, ["parallel.pp=2"])),
}


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    return write_shard(tmp_path_factory.mktemp("data") / "toy_text_document")


@pytest.fixture(scope="module")
def reference(shard, tmp_path_factory):
    run = tmp_path_factory.mktemp("reference")
    train(load_config(None, trainer_overrides(shard, run)))
    return train_losses(run)


def _run(nproc, overrides, shard, run, *extra):
    args = trainer_overrides(shard, run, *overrides, *extra)
    if nproc is SINGLE:
        train(load_config(None, args))
        return
    proc = launch(nproc, "-m", "hyperclova.train", *args, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    # Every rank's memory is logged at start-up, once per distinct line (docs/parallel.md).
    named = set()
    for line in proc.stdout.splitlines():
        if m := re.match(r"ranks? ([\d,-]+): \[pp.*optimizer state", line):
            for part in m.group(1).split(","):
                a, _, b = part.partition("-")
                named |= set(range(int(a), int(b or a) + 1))
    assert named == set(range(nproc)), proc.stdout[-3000:]


@pytest.mark.parametrize("pair", list(PAIRS))
def test_checkpoint_moves_between_layouts(pair, shard, reference, tmp_path):
    (n_a, before), (n_b, after) = PAIRS[pair]
    _run(n_a, before, shard, tmp_path, "train.exit_after=4")
    assert sorted(train_losses(tmp_path)) == [1, 2, 3, 4]
    _run(n_b, after, shard, tmp_path)  # resumes from step 4 in the new layout
    got = train_losses(tmp_path)
    assert sorted(got) == list(range(1, 9))
    for step, loss in reference.items():
        assert loss == pytest.approx(got[step], rel=REL), f"step {step}: {got[step]} vs {loss}"
