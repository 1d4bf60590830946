"""Tuning runs end to end in one process: what a tuned checkpoint holds, exact resume, the frozen
base, the base pointer, bf16 base weights, data accounting and bad configs."""
from __future__ import annotations

import json

import pytest
import torch

from hyperclova.config import ConfigError, load_config
from hyperclova.convert.dcp import CheckpointReader
from hyperclova.errors import UserError
from hyperclova.train.checkpoint import resolve_load_path
from hyperclova.tune.adapters import fingerprint, open_adapter, resolve_base
from tune_helpers import run_tuner, tune_overrides


def _groups(step) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for k in CheckpointReader(step).keys:
        group, rest = k.split(".", 1)
        out.setdefault(group, set()).add(rest)
    return out


def test_checkpoint_holds_the_trained_parameters_only(lora_run, base):
    tuner, out, ckpt = lora_run
    assert out["losses"][-1] < out["losses"][0]
    step = resolve_load_path(ckpt)
    groups = _groups(step)
    trainable = {n for n, p in tuner.engine.model_parts[0].named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    assert groups["model"] == trainable
    # optimizer state (flattened: state.<param>.<field>, param_groups.<param>.<field>) of them only
    assert {k.split(".", 1)[1].rsplit(".", 1)[0] for k in groups["optim"]} == trainable
    assert {opt_p for o in tuner.optimizers.optimizers for g in o.param_groups for opt_p in g["params"]} \
        == {p for p in tuner.engine.model_parts[0].parameters() if p.requires_grad}
    cfg = load_config(step / "config.yaml")
    assert cfg.tune.base == str(resolve_load_path(base).resolve())
    assert cfg.tune.base_fingerprint == fingerprint(base)
    size = sum(f.stat().st_size for f in step.iterdir())
    assert size < sum(f.stat().st_size for f in base.iterdir())


def test_frozen_base_is_bitwise_unchanged(lora_run, ptuning_run, base):
    from hyperclova.generate import load_model

    want = dict(load_model(base)[0].named_parameters())
    for tuner, _, _ in (lora_run, ptuning_run):
        frozen = {n: p for n, p in tuner.engine.model_parts[0].named_parameters()
                  if not p.requires_grad}
        assert set(frozen) == set(want) - {"lm_head.weight"} or set(frozen) == set(want)
        for name, p in frozen.items():
            assert torch.equal(p, want[name]), name


def test_resume_is_bitwise_exact(tmp_path, base, nsmc):
    ov = ["tune.method=ptuning", "tune.ptuning.encoder=mlp"]
    _, full = run_tuner(base, tune_overrides(tmp_path / "full", nsmc[0], *ov))
    _, first = run_tuner(base, tune_overrides(tmp_path / "split", nsmc[0], *ov, "train.exit_after=3"))
    _, second = run_tuner(base, tune_overrides(tmp_path / "split", nsmc[0], *ov))
    assert first["losses"] + second["losses"] == full["losses"]
    a = CheckpointReader(resolve_load_path(tmp_path / "full" / "checkpoints"))
    b = CheckpointReader(resolve_load_path(tmp_path / "split" / "checkpoints"))
    keys = a.group_keys("model") + a.group_keys("optim")
    assert keys and set(keys) == set(b.group_keys("model") + b.group_keys("optim"))
    sa, sb = a.load(keys), b.load(keys)
    for k in keys:
        same = torch.equal(sa[k], sb[k]) if isinstance(sa[k], torch.Tensor) else sa[k] == sb[k]
        assert same, k


def test_an_adapter_refuses_another_base(lora_run, base, other_base, tmp_path, nsmc):
    adapter = open_adapter(lora_run[2])
    assert resolve_base(adapter) == resolve_load_path(base)
    with pytest.raises(UserError, match="was tuned on the base checkpoint .* not on"):
        resolve_base(adapter, other_base)
    with pytest.raises(UserError, match="not a tuned checkpoint"):
        open_adapter(base)
    # resuming a run directory with another base stops before touching it
    run = lora_run[2].parent
    with pytest.raises(UserError, match="was tuned on .* choose another logging.run_dir"):
        run_tuner(other_base, tune_overrides(run, nsmc[0], "tune.method=lora"))


def test_bf16_base_keeps_no_fp32_copy(tmp_path, base, nsmc):
    tuner, out = run_tuner(base, tune_overrides(tmp_path / "run", nsmc[0], "tune.method=lora",
                                                "train.dtype=bf16", "train.steps=2"))
    params = dict(tuner.engine.model_parts[0].named_parameters())
    assert {p.dtype for p in params.values() if not p.requires_grad} == {torch.bfloat16}
    assert {p.dtype for p in params.values() if p.requires_grad} == {torch.float32}
    assert all(torch.isfinite(torch.tensor(out["losses"])))
    state = tuner.optimizers.optimizers[0].state
    assert state and all(p.requires_grad for p in state)


def test_train_samples_and_bad_lines_are_accounted(tmp_path, tok_dir):
    from hyperclova.tokenizer import load_tokenizer
    from hyperclova.tune.data import draw_samples, encode_split, read_split, task_spec

    lines = [json.dumps({"input": f"질문 {i}", "output": f"답 {i}"}, ensure_ascii=False)
             for i in range(12)]
    lines[3] = "{not json"
    lines[5] = json.dumps({"input": "출력이 없다"}, ensure_ascii=False)
    lines[7] = json.dumps({"input": "아주 긴 입력 " * 200, "output": "답"}, ensure_ascii=False)
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = load_config(None, ["tune.task=jsonl"])
    spec = task_spec(cfg)
    split = encode_split(spec, read_split(spec, "train", str(path)), load_tokenizer(tok_dir), 128)
    assert (split.read, len(split.items)) == (12, 9)
    assert dict(split.skipped) == {"invalid_json": 1, "missing_key": 1, "too_long": 1}
    assert f"{path}:8" in split.summary() and "read 12 = kept 9 + skipped 3" in split.summary()
    ex = split.items[0]  # the loss covers "output" and the end of document only
    assert ex.ids[-1] == load_tokenizer(tok_dir).eod_id and 1 <= ex.split < len(ex.ids) - 1
    assert len(draw_samples(split, 4, seed=1).items) == 4
    with pytest.raises(ConfigError, match="tune.train_samples=50"):
        draw_samples(split, 50, seed=1)


def test_train_samples_flag_tunes_on_n_examples(tmp_path, base, nsmc, capsys):
    """`--train-samples N` (Table 4's data-size ablation) through the command line."""
    from hyperclova.tune.__main__ import main

    out = main(["--checkpoint", str(base), "--train-samples", "20",
                *tune_overrides(tmp_path, nsmc[0], "tune.method=lora", "train.steps=1")])
    assert "20 training examples" in capsys.readouterr().out and len(out["losses"]) == 1
    step = resolve_load_path(tmp_path / "checkpoints")
    assert load_config(step / "config.yaml").tune.train_samples == 20


@pytest.mark.parametrize("override, key", [
    ("tune.lora.rank=0", "tune.lora.rank"),
    ("tune.lora.targets=[qkv,q_proj]", "tune.lora.targets"),
    ("tune.ptuning.template=[100,40]", "tune.ptuning.template"),
    ("tune.method=prefix", "tune.method"),
    ("model.d_model=128", "model.d_model"),
    ("--train-samples=0", "tune.train_samples"),
])
def test_bad_configs_stop_naming_the_key(override, key, base, capsys):
    from hyperclova.tune.__main__ import main

    method = ["tune.method=ptuning"] if "ptuning" in override else []
    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", str(base), "tune.task=nsmc", *method, override])
    assert e.value.code == 2
    assert key in capsys.readouterr().err


def test_channel_tasks_tune_the_channel_way(tmp_path, tok_dir, nsmc):
    """scoring: channel: the label word (P-tuning: inside its virtual tokens) is the context and
    the text the target, as evaluation scores it."""
    from hyperclova.tokenizer import load_tokenizer
    from hyperclova.tune.adapters import adapter_tokenizer
    from hyperclova.tune.data import encode_split, read_split, task_spec

    task = tmp_path / "channel.yaml"
    task.write_text('task: ch\nformat: nsmc\noutput_type: multiple_choice\nscoring: channel\n'
                    'target_delimiter: "\\n"\ndoc_to_text: "{{document}}"\ndoc_to_target: "{{label}}"\n'
                    'doc_to_choice: {0: 별로, 1: 최고}\nmetric: accuracy\n', encoding="utf-8")
    cfg = load_config(None, [f"tune.task={task}", "tune.method=ptuning", "model.vocab_size=640"])
    spec = task_spec(cfg)
    assert spec.doc_to_choice[1] == "\U00100000\U00100001\U00100002최고\U00100003\U00100004\U00100005"
    tok = adapter_tokenizer(cfg, load_tokenizer(tok_dir))
    split = encode_split(spec, read_split(spec, "train", str(nsmc[0])), tok, 128)
    ex, rec = split.items[0], nsmc[0].read_text(encoding="utf-8").splitlines()[1].split("\t")
    assert ex.ids[:3] == [640, 641, 642] and ex.ids[ex.split - 3:ex.split] == [643, 644, 645]
    assert tok.decode(ex.ids[3:ex.split - 3]) == ("최고" if rec[2] == "1" else "별로")
    assert tok.decode(ex.ids[ex.split:]) == "\n" + rec[1]
    # each virtual token is a pre-tokenization segment of its own (evaluation's split points)
    segs = tok.segments(spec.doc_to_choice[1] + "\n이 영화")
    assert "".join(segs) == spec.doc_to_choice[1] + "\n이 영화"
    assert segs[:4] == ["\U00100000", "\U00100001", "\U00100002", "최고"]
