import pytest

from hyperclova.config import Config, ConfigError, dump_yaml, load_config


def test_defaults_and_overrides():
    cfg = load_config(None, ["train.lr=3e-4", "model=1.3b", "train.steps=7", "optim.fused=false"])
    assert cfg.train.lr == 3e-4 and isinstance(cfg.train.lr, float)
    assert cfg.model.n_layers == 24 and cfg.model.d_model == 2048 and cfg.model.preset == "1.3b"
    assert cfg.train.steps == 7 and cfg.optim.fused is False


def test_preset_lr_is_default_and_override_order():
    assert load_config(None, ["model=350m"]).lr == 3.0e-4
    cfg = load_config(None, ["model=350m", "model.dropout=0.1"])
    assert cfg.model.dropout == 0.1 and cfg.model.d_model == 1024
    # a later preset replaces the whole section
    assert load_config(None, ["model.dropout=0.1", "model=137m"]).model.dropout == 0.0


def test_yaml_file_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: tiny\ntrain:\n  steps: 5\n  lr: 1e-3\ndata:\n  blend: [0.3, a, 0.7, b]\n")
    cfg = load_config(f, ["train.steps=9"])
    assert cfg.model.preset == "tiny" and cfg.train.steps == 9 and cfg.train.lr == 1e-3
    assert cfg.data.blend == [0.3, "a", 0.7, "b"]


@pytest.mark.parametrize("override, fragment", [
    (["train.lrr=1"], "train.lrr"),
    (["trian.steps=1"], "trian"),
    (["train.steps=ten"], "train.steps"),
    (["train.steps=1.5"], "train.steps"),
    (["optim.fused=maybe"], "optim.fused"),
    (["train.dtype=fp8"], "train.dtype"),
    (["model=7b"], "unknown preset"),
    (["model.n_heads=5"], "model.d_model"),
    (["data.blend=3"], "data.blend"),
    (["steps"], "section.key=value"),
])
def test_bad_keys_and_types_name_the_key(override, fragment):
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        load_config(None, override)


def test_typo_gets_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'steps'"):
        load_config(None, ["train.stpes=3"])


def test_bad_yaml_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(f)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_dump_round_trip(tmp_path):
    cfg = load_config(None, ["model=tiny", "train.lr=2e-4"])
    f = tmp_path / "saved.yaml"
    f.write_text(dump_yaml(cfg))
    assert load_config(f) == cfg


def test_shipped_configs_load():
    from pathlib import Path

    files = sorted(Path(__file__).parents[1].joinpath("configs").rglob("*.yaml"))
    for f in files:
        if "corpus" in f.parts:  # corpus recipes are not training configs
            continue
        assert isinstance(load_config(f), Config), f
