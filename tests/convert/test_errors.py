"""Bad input gets a clear error naming the tensor (and both shapes) or the config key;
architectures we cannot represent are refused; the CLI prints one line and exits 2."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from convert_helpers import TINY, make_config, random_model, save_training_checkpoint
from safetensors.torch import load_file, save_file

from hyperclova.config import dump_yaml
from hyperclova.convert import from_hf, to_hf
from hyperclova.convert.hf import ConversionError
from hyperclova.errors import UserError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def hf_dir(tmp_path, tiny_ckpt) -> Path:
    """A valid exported directory to break in various ways."""
    _, _, ckpt = tiny_ckpt
    to_hf(ckpt, tmp_path / "hf")
    return tmp_path / "hf"


def _edit_config(hf_dir: Path, **changes) -> None:
    path = hf_dir / "config.json"
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


def _edit_weights(hf_dir: Path, edit) -> None:
    path = hf_dir / "model.safetensors"
    sd = load_file(path)
    edit(sd)
    save_file(sd, path, metadata={"format": "pt"})


def test_shape_mismatch_names_tensor_and_both_shapes(tmp_path, tiny_ckpt):
    cfg, _, ckpt = tiny_ckpt
    wrong = make_config(TINY + ["model.seq_len=128"])  # position table too short for the weights
    (tmp_path / "wrong.yaml").write_text(dump_yaml(wrong))
    with pytest.raises(ConversionError, match=r"'pos_emb\.weight' has shape \(256, 128\), expected \(128, 128\)"):
        to_hf(ckpt, tmp_path / "out", config_path=tmp_path / "wrong.yaml")


def test_hf_position_table_and_vocab_checked(hf_dir, tmp_path):
    _edit_config(hf_dir, n_positions=512)
    with pytest.raises(ConversionError, match=r"'transformer\.wpe\.weight' has shape \(256, 128\), expected \(512, 128\)"):
        from_hf(hf_dir, tmp_path / "ck")
    _edit_config(hf_dir, n_positions=256, vocab_size=5000)
    with pytest.raises(ConversionError, match=r"'transformer\.wte\.weight' has shape \(4096, 128\), expected \(5000, 128\)"):
        from_hf(hf_dir, tmp_path / "ck")


def test_untied_heads_refused(hf_dir, tmp_path):
    def untie(sd):
        sd["lm_head.weight"] = sd["transformer.wte.weight"] + 1.0
    _edit_weights(hf_dir, untie)
    with pytest.raises(ConversionError, match="untied output heads are not supported"):
        from_hf(hf_dir, tmp_path / "ck")
    _edit_config(hf_dir, tie_word_embeddings=False)
    with pytest.raises(ConversionError, match="tie_word_embeddings"):
        from_hf(hf_dir, tmp_path / "ck")


def test_tied_head_stored_explicitly_is_accepted(hf_dir, tmp_path):
    _edit_weights(hf_dir, lambda sd: sd.__setitem__("lm_head.weight", sd["transformer.wte.weight"].clone()))
    from_hf(hf_dir, tmp_path / "ck")
    from hyperclova.generate import load_model

    model, _ = load_model(tmp_path / "ck")
    wte = load_file(str(hf_dir / "model.safetensors"))["transformer.wte.weight"]
    assert torch.equal(model.tok_emb.weight, wte) and model.lm_head.weight is model.tok_emb.weight


@pytest.mark.parametrize("key,what", [("transformer.h.0.attn.rotary_emb.inv_freq", "rotary"),
                                      ("transformer.h.1.mlp.gate_proj.weight", "gated MLP"),
                                      ("transformer.h.0.extra.weight", "unexpected tensor")])
def test_foreign_tensors_refused(hf_dir, tmp_path, key, what):
    _edit_weights(hf_dir, lambda sd: sd.__setitem__(key, torch.zeros(4)))
    with pytest.raises(ConversionError, match=what) as e:
        from_hf(hf_dir, tmp_path / "ck")
    assert key in str(e.value)


def test_other_architectures_refused(hf_dir, tmp_path):
    _edit_config(hf_dir, model_type="llama", architectures=["LlamaForCausalLM"])
    with pytest.raises(ConversionError, match="rotary position embeddings, gated MLP"):
        from_hf(hf_dir, tmp_path / "ck")


def test_missing_tensor_named(hf_dir, tmp_path):
    _edit_weights(hf_dir, lambda sd: sd.pop("transformer.h.2.mlp.c_fc.bias"))
    with pytest.raises(ConversionError, match=r"'transformer\.h\.2\.mlp\.c_fc\.bias' \(expected shape \(512,\)"):
        from_hf(hf_dir, tmp_path / "ck")


def test_approximate_gelu_needs_consent(hf_dir, tmp_path):
    _edit_config(hf_dir, activation_function="gelu_new")
    with pytest.raises(ConversionError, match="--allow-approx-gelu"):
        from_hf(hf_dir, tmp_path / "ck")
    from_hf(hf_dir, tmp_path / "ck", allow_approx_gelu=True)


def test_architecture_overrides_refused(hf_dir, tmp_path):
    with pytest.raises(UserError, match="model.n_layers"):
        from_hf(hf_dir, tmp_path / "ck", overrides=["model.n_layers=8"])


def test_foreign_tensor_in_checkpoint_refused(tmp_path):
    cfg = make_config(TINY, tmp_path / "ckpt")
    model = random_model(cfg)
    model.layers["0"].mlp.register_parameter("gate", torch.nn.Parameter(torch.zeros(8)))
    save_training_checkpoint(cfg, model)
    with pytest.raises(ConversionError, match=r"'layers\.0\.mlp\.gate' implies a gated MLP"):
        to_hf(tmp_path / "ckpt", tmp_path / "out")


def test_incomplete_checkpoint_refused(tmp_path, tiny_ckpt):
    _, _, ckpt = tiny_ckpt
    copy = tmp_path / "ckpt"
    shutil.copytree(ckpt, copy)
    step = copy / (copy / "latest").read_text().strip()
    (step / "COMPLETE").unlink()
    with pytest.raises(UserError, match="incomplete checkpoint: no COMPLETE marker"):
        to_hf(copy, tmp_path / "out")


def test_existing_output_not_overwritten(hf_dir, tiny_ckpt):
    with pytest.raises(UserError, match="already exists"):
        to_hf(tiny_ckpt[2], hf_dir)


def test_cli_error_is_one_line_and_status_2(tmp_path, capsys):
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import convert_checkpoint
    finally:
        sys.path.pop(0)
    with pytest.raises(SystemExit) as e:
        convert_checkpoint.main(["to-hf", str(tmp_path / "nope"), str(tmp_path / "out")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no such checkpoint directory" in err and "Traceback" not in err


def test_cli_runs_from_repo_root(tmp_path, tiny_ckpt):
    _, _, ckpt = tiny_ckpt
    out = subprocess.run([sys.executable, "tools/convert_checkpoint.py", "consolidate", str(ckpt),
                          str(tmp_path / "m.safetensors"), "--dtype", "bf16"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "consolidate:" in out.stdout and "1,350,400 model parameters" in out.stdout
    assert load_file(tmp_path / "m.safetensors")["tok_emb.weight"].dtype == torch.bfloat16


def test_reshard_refuses_a_model_the_weights_do_not_fit(tiny_ckpt, tmp_path):
    from hyperclova.convert import reshard
    from hyperclova.errors import UserError

    _, _, ckpt = tiny_ckpt
    with pytest.raises(UserError, match="reshard keeps the model"):
        reshard(ckpt, tmp_path / "a", ["model.n_layers=2"])
    other = tmp_path / "other.yaml"  # a config file that silently describes another model
    other.write_text("model:\n  preset: tiny\n  n_layers: 2\n  d_model: 128\n  n_heads: 4\n"
                     "  vocab_size: 4096\n  seq_len: 256\n")
    with pytest.raises(UserError, match="layers.2"):
        reshard(ckpt, tmp_path / "b", config_path=other)
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


def test_from_hf_refuses_an_architecture_override(hf_dir, tmp_path):
    from hyperclova.errors import UserError

    with pytest.raises(UserError, match="ln_eps.*architecture fields cannot change"):
        from_hf(hf_dir, tmp_path / "ck", overrides=["model.ln_eps=1e-3"])


def test_from_hf_and_reshard_refuse_a_non_empty_target(hf_dir, tiny_ckpt, tmp_path, capsys):
    """Into a run's checkpoint directory they would repoint `latest` at an older step."""
    from hyperclova.convert import reshard

    _, _, ckpt = tiny_ckpt
    run = tmp_path / "run"
    shutil.copytree(ckpt, run)  # a run whose newest checkpoint is step 3
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(UserError, match=f"output directory {run} is not empty"):
        from_hf(hf_dir, run)
    with pytest.raises(UserError, match="is not empty"):
        reshard(ckpt, run, ["parallel.tp=2"])
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import convert_checkpoint
    finally:
        sys.path.pop(0)
    with pytest.raises(SystemExit) as e:
        convert_checkpoint.main(["from-hf", str(hf_dir), str(run)])
    assert e.value.code == 2 and "is not empty" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == before
    assert (run / "latest").read_text() == "step_00000003"
    empty = tmp_path / "empty"
    empty.mkdir()
    from_hf(hf_dir, empty)  # an existing empty directory is fine
    assert (empty / "latest").read_text() == "step_00000000"
