import json
import shutil

import pytest

from hyperclova.train.checkpoint import LATEST, MARKER, find_resumable
from hyperclova.train.lock import LOCK_FILE
from hyperclova.train.trainer import NonFiniteLoss, train


def losses(result):
    return result["losses"]


def test_loss_falls_and_metrics_written(make_cfg, tmp_path):
    cfg = make_cfg("train.steps=40", "checkpoint.interval=0", "train.eval_interval=20",
                   "logging.tensorboard=true")
    out = train(cfg)
    ls = losses(out)
    assert len(ls) == 40 and ls[-1] < 0.75 * ls[0]
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train_rows] == list(range(1, 41))
    assert {"loss", "lr", "grad_norm", "tokens_per_s"} <= set(train_rows[0])
    valid = [r for r in rows if r["kind"] == "valid"]
    assert [r["step"] for r in valid] == [20, 40] and valid[-1]["ppl"] > 1
    assert list((tmp_path / "run" / "tensorboard").iterdir())


def test_resume_is_bitwise_exact(make_cfg):
    """With dropout, so the restored RNG streams must be exactly where the uninterrupted run
    had them: nothing between restore and the first step may draw from them (the loaders
    have generators of their own)."""
    full = losses(train(make_cfg("model.dropout=0.1", run="full")))
    first = train(make_cfg("model.dropout=0.1", "train.exit_after=4", run="split"))
    assert first["step"] == 4 and losses(first) == full[:4]
    second = train(make_cfg("model.dropout=0.1", run="split"))
    assert losses(second) == full[4:]  # bitwise: same floats, not approximately


def test_gradient_accumulation_equals_one_big_batch(make_cfg):
    one = losses(train(make_cfg("train.micro_batch_size=8", run="a")))
    acc = losses(train(make_cfg("train.micro_batch_size=2", run="b")))
    assert acc == pytest.approx(one, rel=1e-5)


def test_checkpoints_latest_pointer_config_and_pruning(make_cfg, tmp_path):
    train(make_cfg("train.steps=12", "checkpoint.keep_last=2"))
    ckpt = tmp_path / "run" / "checkpoints"
    names = sorted(p.name for p in ckpt.iterdir())
    assert names == [LOCK_FILE, LATEST, "step_00000008", "step_00000012"]
    assert (ckpt / LATEST).read_text() == "step_00000012"
    assert "n_layers: 2" in (ckpt / "step_00000012" / "config.yaml").read_text()
    assert json.loads((ckpt / "step_00000012" / MARKER).read_text())["step"] == 12


def test_corrupt_or_partial_checkpoint_falls_back(make_cfg, tmp_path, capsys):
    full = losses(train(make_cfg(run="ref")))
    train(make_cfg("checkpoint.keep_last=3", "train.exit_after=8", run="run"))
    ckpt = tmp_path / "run" / "checkpoints"
    newest = ckpt / "step_00000008"
    data = next(newest.glob("*.distcp"))
    data.write_bytes(data.read_bytes()[:100])  # truncated on disk
    partial = ckpt / "step_00000009"  # a save that died before its marker
    shutil.copytree(ckpt / "step_00000004", partial)
    (partial / MARKER).unlink()
    (ckpt / LATEST).write_text(partial.name)
    assert find_resumable(ckpt, log=print) == ckpt / "step_00000004"
    out = capsys.readouterr().out
    assert "step_00000009 is unusable: no COMPLETE marker" in out
    assert "step_00000008 is unusable: file" in out
    resumed = train(make_cfg(run="run"))
    assert losses(resumed) == full[4:]


def test_nonfinite_loss_stops_naming_the_step_or_skips(make_cfg):
    with pytest.raises(NonFiniteLoss, match="at step 2 "):
        train(make_cfg("train.lr=1e30", "schedule.warmup_steps=0", "optim.grad_clip=0"))
    out = train(make_cfg("train.lr=1e30", "schedule.warmup_steps=0", "optim.grad_clip=0",
                         "train.on_nonfinite=skip", "train.steps=3", run="skip"))
    assert out["step"] == 3


def test_batch_not_divisible_is_a_clear_error(make_cfg):
    from hyperclova.errors import UserError

    with pytest.raises(UserError, match="global_batch_size=8 is not divisible"):
        train(make_cfg("train.micro_batch_size=3"))


def test_checkpoint_load_initialises_weights_only(make_cfg, tmp_path):
    seed = train(make_cfg("train.steps=2", run="seed"))["checkpoint"]
    # same weights, fresh optimizer and step count: a different seed alone would differ
    a = losses(train(make_cfg(f"checkpoint.load={seed}", "train.seed=7", "train.steps=2", run="a")))
    b = losses(train(make_cfg(f"checkpoint.load={tmp_path / 'seed' / 'checkpoints'}", "train.seed=7",
                              "train.steps=2", run="b")))
    c = losses(train(make_cfg("train.seed=7", "train.steps=2", run="c")))
    assert a == b and a != c


def test_tokenizer_larger_than_model_vocab_is_refused(make_cfg, tmp_path):
    from hyperclova.errors import UserError
    from hyperclova.tokenizer import train_tokenizer

    text = tmp_path / "t.txt"
    text.write_text("".join(f"문장 {i} 번째 줄입니다 토큰 {i * 7}\n" for i in range(400)), encoding="utf-8")
    tok = tmp_path / "tok"
    train_tokenizer([str(text)], str(tok), type="bbpe", vocab_size=400, show_progress=False)
    with pytest.raises(UserError, match="model.vocab_size=256"):
        train(make_cfg(f"data.tokenizer={tok}"))


def test_single_device_recompute_matches(make_cfg):
    ref = losses(train(make_cfg("train.steps=3", run="ref")))
    for mode in ("selective", "full"):
        got = losses(train(make_cfg("train.steps=3", f"parallel.recompute={mode}", run=mode)))
        assert got == pytest.approx(ref, rel=1e-6), mode


def test_single_device_compile_matches(make_cfg):
    ref = losses(train(make_cfg("train.steps=3", run="ref")))
    got = losses(train(make_cfg("train.steps=3", "parallel.compile=true", run="compiled")))
    assert got == pytest.approx(ref, rel=1e-4)
