import math

import pytest

from hyperclova.config import load_config
from hyperclova.train.optim import lr_at, schedule_for


def test_warmup_then_cosine_to_a_tenth():
    f = lambda s: lr_at(s, base_lr=1.0, warmup=10, decay_steps=110, min_ratio=0.1)
    assert f(1) == pytest.approx(0.1) and f(5) == pytest.approx(0.5) and f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the cosine
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    values = [f(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_schedule_uses_preset_lr_and_train_steps():
    cfg = load_config(None, ["model=137m", "train.steps=200", "schedule.warmup_steps=20"])
    f = schedule_for(cfg)
    assert f(20) == pytest.approx(6e-4)
    assert f(200) == pytest.approx(6e-5)
    assert math.isclose(f(110), 6e-5 + 0.5 * (6e-4 - 6e-5))
