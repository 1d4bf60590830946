"""Session fixtures of the tuning tests: a tokenizer, two random base checkpoints, NSMC-format
files, and one finished LoRA and one P-tuning run (tests read them; none may modify them)."""
from __future__ import annotations

import pytest

from tune_helpers import make_base, make_tokenizer, run_tuner, tune_overrides, write_nsmc


@pytest.fixture(scope="session")
def tok_dir(tmp_path_factory) -> str:
    return make_tokenizer(tmp_path_factory.mktemp("tune_tok"))


@pytest.fixture(scope="session")
def base(tmp_path_factory, tok_dir):
    return make_base(tmp_path_factory.mktemp("base"), tok_dir, seed=3)


@pytest.fixture(scope="session")
def other_base(tmp_path_factory, tok_dir):
    return make_base(tmp_path_factory.mktemp("other_base"), tok_dir, seed=4)


@pytest.fixture(scope="session")
def nsmc(tmp_path_factory):
    root = tmp_path_factory.mktemp("nsmc")
    return write_nsmc(root / "ratings_train.txt", 48, 0), write_nsmc(root / "ratings_test.txt", 16, 1)


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory, base, nsmc):
    run = tmp_path_factory.mktemp("lora_run")
    tuner, out = run_tuner(base, tune_overrides(run, nsmc[0], "tune.method=lora",
                                                "tune.lora.targets=[qkv,proj,fc1,fc2]"))
    return tuner, out, run / "checkpoints"


@pytest.fixture(scope="session")
def ptuning_run(tmp_path_factory, base, nsmc):
    run = tmp_path_factory.mktemp("ptuning_run")
    tuner, out = run_tuner(base, tune_overrides(run, nsmc[0], "tune.method=ptuning"))
    return tuner, out, run / "checkpoints"
