"""The trainer's batch assembly: masked labels, and data that runs out mid-run."""
import pytest
import torch

from hyperclova.data.prefetch import Prefetcher, assemble
from hyperclova.errors import UserError
from hyperclova.parallel.loss import IGNORE


def micro_batches(n: int, masked: bool = False):
    for i in range(n):
        mb = {"tokens": torch.full((1, 4), i), "labels": torch.full((1, 4), i + 1)}
        if masked:
            mb["loss_mask"] = torch.tensor([[0, 1, 1, 0]])
        yield mb


def test_assemble_stacks_and_masks():
    tokens, labels = assemble(micro_batches(2, masked=True), 2)
    assert tokens.tolist() == [[0] * 4, [1] * 4]
    assert labels.tolist() == [[IGNORE, 1, 1, IGNORE], [IGNORE, 2, 2, IGNORE]]


def test_data_running_out_is_a_user_error_at_the_step_that_needs_it():
    batches = Prefetcher(micro_batches(3), 2, torch.device("cpu"))
    try:
        tokens, _ = batches.next()
        assert tokens.shape == (2, 4)
        with pytest.raises(UserError, match="ran out before train.steps"):
            batches.next()
    finally:
        batches.close()
