"""The adapters' exactness: a fresh LoRA (B = 0) or a P-tuning encoder leaves the base model's
logits exactly as they were; merging LoRA gives the unmerged model's logits; P-tuning's stored
prompt table gives the live encoder's logits."""
from __future__ import annotations

import pytest
import torch

from hyperclova.config import load_config
from hyperclova.generate import load_model
from hyperclova.train.engine import build_engine
from hyperclova.tune.adapters import (
    load_model_keys,
    model_transforms,
    open_adapter,
    resolve_base,
)
from hyperclova.tune.lora import LoRALinear, merge_lora_
from tune_helpers import BASE_MODEL

CPU = torch.device("cpu")


def _logits(engine, tokens):
    return engine.forward_eval(tokens, lambda logits: logits)


def test_fresh_adapters_leave_the_base_logits_exactly():
    cfg = load_config(None, [*BASE_MODEL, "train.device=cpu"])
    tokens = torch.randint(0, 640, (2, 24), generator=torch.Generator().manual_seed(0))
    want = _logits(build_engine(cfg, CPU), tokens)
    for method in ("tune.method=lora", "tune.method=ptuning"):
        tcfg = load_config(None, [*BASE_MODEL, "train.device=cpu", method,
                                  "tune.lora.targets=[qkv,proj,fc1,fc2]", "tune.lora.rank=4"])
        engine = build_engine(tcfg, CPU, model_transforms(tcfg, CPU))
        if method.endswith("lora"):
            layers = [m for m in engine.model_parts[0].modules() if isinstance(m, LoRALinear)]
            assert len(layers) == 8 and all(m.lora_A.weight.abs().sum() > 0 for m in layers)
        assert torch.equal(_logits(engine, tokens), want), method


def test_merged_lora_gives_the_unmerged_logits(lora_run, tmp_path):
    from hyperclova.convert import merge_adapter

    tuned, _ = load_model(None, adapter=lora_run[2])
    assert max(m.lora_B.weight.abs().max().item() for m in tuned.modules()
               if isinstance(m, LoRALinear)) > 0  # tuning moved B off zero
    tokens = torch.randint(0, 640, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = tuned(tokens)
        merge_lora_(tuned)
        assert not any(isinstance(m, LoRALinear) for m in tuned.modules())
        torch.testing.assert_close(tuned(tokens), want, rtol=1e-5, atol=1e-5)
        merge_adapter(lora_run[2], tmp_path / "merged")  # offline, streamed: a plain checkpoint
        merged, _ = load_model(tmp_path / "merged")
        torch.testing.assert_close(merged(tokens), want, rtol=1e-5, atol=1e-5)
    # ... and out to transformers through to-hf, like any checkpoint
    from transformers import GPT2LMHeadModel

    from hyperclova.convert import to_hf

    to_hf(tmp_path / "merged", tmp_path / "hf")
    with torch.no_grad():
        hf = GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
        torch.testing.assert_close(hf(tokens).logits, want, rtol=1e-4, atol=1e-4)


def test_stored_prompt_table_gives_the_live_encoders_logits(ptuning_run):
    adapter = open_adapter(ptuning_run[2])
    stored, _ = load_model(None, adapter=ptuning_run[2])  # the encoder run once, its output kept
    assert stored.input_adapter.encoder is None and stored.input_adapter.stored.shape == (6, 64)
    cfg = load_config(None, [*BASE_MODEL, "train.device=cpu", "tune.method=ptuning"])
    live = build_engine(cfg, CPU, model_transforms(cfg, CPU))  # the encoder, as in tuning
    live.load_weights(resolve_base(adapter))
    assert load_model_keys(live.model_parts, adapter.path)
    tokens = torch.randint(0, 640, (2, 24), generator=torch.Generator().manual_seed(2))
    tokens[:, :3] = 640 + torch.arange(3)  # [P]*3 input [P]*3
    tokens[:, 12:15] = 643 + torch.arange(3)
    with torch.no_grad():
        torch.testing.assert_close(stored(tokens), _logits(live, tokens), rtol=1e-6, atol=1e-6)


def test_adapter_conversions_refuse_a_non_empty_target(lora_run, ptuning_run, tmp_path, capsys):
    """merge-adapter, export-peft and export-prompts write only into a new or empty directory
    (like every conversion), and say so before any work; nothing in the directory changes."""
    from hyperclova.cli.convert_checkpoint import main

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    for cmd, run in (("merge-adapter", lora_run), ("export-peft", lora_run),
                     ("export-prompts", ptuning_run)):
        with pytest.raises(SystemExit) as e:
            main([cmd, str(run[2]), str(out)])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert f"output directory {out} is not empty (keep.txt)" in err, (cmd, err)
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    main(["export-prompts", str(ptuning_run[2]), str(tmp_path / "new")])  # a new one is fine
    assert (tmp_path / "new" / "prompt_config.json").is_file()
