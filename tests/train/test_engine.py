"""The engine and the loop on one process: dropout with recompute, attention kernels, the step
that never waits for the host, and the exact handling of non-finite steps."""
import json

import pytest
import torch
import torch.distributed as dist

from hyperclova.config import load_config
from hyperclova.train.engine import build_engine
from hyperclova.train.trainer import NonFiniteLoss, Trainer, train

BASE = ["model=tiny", "model.n_layers=2", "model.seq_len=64", "train.device=cpu",
        "train.micro_batch_size=4", "train.global_batch_size=4"]


def grads_of(*overrides, seed=0):
    cfg = load_config(None, BASE + list(overrides))
    engine = build_engine(cfg)
    g = torch.Generator().manual_seed(1)
    seq = torch.randint(0, cfg.model.vocab_size, (4, 65), generator=g)
    torch.manual_seed(seed)  # the dropout masks
    loss = engine.forward_backward(seq[:, :-1], seq[:, 1:], 2)
    names = {n.replace("_checkpoint_wrapped_module.", ""): p.grad.clone()
             for n, p in engine.model_parts[0].named_parameters()}
    return loss, names


@pytest.mark.parametrize("mode", ["selective", "full"])
def test_dropout_with_recompute_gives_the_gradients_without(mode):
    loss, want = grads_of("model.dropout=0.1")
    got_loss, got = grads_of("model.dropout=0.1", f"parallel.recompute={mode}")
    assert torch.equal(loss, got_loss)
    for name, g in want.items():
        torch.testing.assert_close(got[name], g, rtol=1e-5, atol=1e-7, msg=name)
    _, no_dropout = grads_of()
    assert not torch.allclose(no_dropout["tok_emb.weight"], want["tok_emb.weight"])  # it bites


def test_sdpa_backend_preference_changes_no_result():
    loss, want = grads_of()
    got_loss, got = grads_of("train.sdpa_backends=[math]")
    torch.testing.assert_close(got_loss, loss, rtol=1e-5, atol=0)
    for name, g in want.items():
        torch.testing.assert_close(got[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_engine_returns_device_tensors_and_forward_eval_is_the_model(make_cfg):
    cfg = load_config(None, BASE)
    engine = build_engine(cfg)
    tokens = torch.randint(0, cfg.model.vocab_size, (2, 16))
    logits = engine.forward_eval(tokens, reduce=lambda x: x)
    part = engine.model_parts[0]
    assert logits.shape == (2, 16, cfg.model.vocab_size) and logits.dtype == torch.float32
    torch.testing.assert_close(logits, part.lm_head(part(tokens)))  # part stops at ln_f
    assert part.training  # forward_eval restores the mode


class HostReadInStep(AssertionError):
    pass


def test_the_training_step_never_reads_the_device(make_cfg, monkeypatch):
    """Trainer.step queues its work and returns: every value (loss, grad norm, non-finite flags)
    is read once per log interval, in Trainer.flush."""
    in_step = {"on": False}

    def guard(name):
        original = getattr(torch.Tensor, name)

        def wrapped(self, *a, **kw):
            if in_step["on"]:
                raise HostReadInStep(f"Tensor.{name} inside Trainer.step")
            return original(self, *a, **kw)
        monkeypatch.setattr(torch.Tensor, name, wrapped)

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy"):
        guard(name)
    step = Trainer.step

    def watched(self, *a, **kw):
        in_step["on"] = True
        try:
            return step(self, *a, **kw)
        finally:
            in_step["on"] = False

    monkeypatch.setattr(Trainer, "step", watched)
    out = train(make_cfg("train.steps=6", "logging.log_interval=3", "checkpoint.interval=0",
                         "train.eval_interval=0"))
    assert len(out["losses"]) == 6


def run_trainer(cfg):
    trainer = Trainer(cfg)
    try:
        try:
            trainer.run()
            error = None
        except NonFiniteLoss as e:
            error = e
        return trainer, error
    finally:
        dist.destroy_process_group()


def test_stop_is_exact_the_parameters_are_those_of_the_last_good_step(make_cfg):
    bad = ["train.lr=1e30", "schedule.warmup_steps=0", "schedule.decay_steps=100",
           "optim.grad_clip=0", "checkpoint.interval=0", "train.eval_interval=0"]
    stopped, error = run_trainer(make_cfg(*bad, "train.steps=8", run="stop"))
    assert "at step 2 " in str(error)  # detected at the flush, named at the step it happened
    one_step, _ = run_trainer(make_cfg(*bad, "train.steps=1", run="one"))
    for p, q in zip(stopped.engine.model_parts[0].parameters(),
                    one_step.engine.model_parts[0].parameters()):
        assert torch.equal(p, q)  # steps 2..8 changed nothing
    steps = {s["step"].item() for opt in stopped.optimizers.optimizers for s in opt.state.values()}
    assert steps == {1.0}  # nor the optimizer's step count


def test_skipped_steps_are_recorded_and_bounded(make_cfg, tmp_path):
    bad = ["train.lr=1e30", "schedule.warmup_steps=0", "optim.grad_clip=0", "train.steps=5",
           "checkpoint.interval=0", "train.eval_interval=0", "train.on_nonfinite=skip"]
    out = train(make_cfg(*bad, run="skip"))
    rows = [json.loads(line) for line in (tmp_path / "skip" / "metrics.jsonl").read_text().splitlines()]
    skipped = [r["step"] for r in rows if r.get("skipped")]
    assert skipped == [2, 3, 4, 5] and out["step"] == 5
    _, error = run_trainer(make_cfg(*bad, "train.max_consecutive_skips=2", run="run"))
    assert "stopping at step 4" in str(error) and "max_consecutive_skips=2" in str(error)
    _, error = run_trainer(make_cfg(*bad, "train.max_skipped_steps=0", run="total"))
    assert "stopping at step 2" in str(error) and "max_skipped_steps=0" in str(error)


def test_the_saved_config_has_the_resolved_learning_rate(make_cfg, tmp_path):
    cfg = make_cfg("train.steps=1", "train.eval_interval=0", run="lr")
    cfg.train.lr = None  # the preset's (here the default) learning rate
    train(cfg)
    saved = load_config(tmp_path / "lr" / "checkpoints" / "step_00000001" / "config.yaml")
    assert saved.train.lr == cfg.lr and saved.train.lr is not None


def test_load_weights_reads_a_training_checkpoint_like_generate_does(make_cfg, tmp_path):
    from hyperclova.errors import UserError
    from hyperclova.generate import load_model

    cfg = make_cfg("train.steps=2", "train.eval_interval=0", run="w")
    ckpt = train(cfg)["checkpoint"]
    shape = ["model.d_model=64", "model.n_heads=4", "model.vocab_size=256", "model.seq_len=32",
             "train.device=cpu"]
    engine = build_engine(load_config(None, shape + ["model.n_layers=2"]))
    assert engine.load_weights(tmp_path / "w" / "checkpoints") == []  # the dir's `latest`
    model, _ = load_model(ckpt)
    tokens = torch.randint(0, 256, (2, 32))
    torch.testing.assert_close(engine.forward_eval(tokens, lambda x: x), model(tokens))

    deeper = build_engine(load_config(None, shape + ["model.n_layers=3"]))
    with pytest.raises(UserError, match="no weights for .*layers.2"):
        deeper.load_weights(ckpt)  # the model's own parameters must all be in the checkpoint
