"""Our model and transformers agree on logits (1e-4, fp32) and greedy tokens; from-hf then
to-hf gives back bit-identical tensors; bf16/fp16 exports are exact casts of our weights."""
from __future__ import annotations

import filecmp
import json

import pytest
import torch
from convert_helpers import TINY, WIDE, make_config, random_model, save_training_checkpoint
from safetensors.torch import load_file

from hyperclova.convert import consolidate, from_hf, load_consolidated, to_hf
from hyperclova.convert.hf import all_maps
from hyperclova.model.gpt import GPT

transformers = pytest.importorskip("transformers")


def greedy(model: GPT, prompt: torch.Tensor, n: int) -> torch.Tensor:
    x = prompt
    for _ in range(n):
        x = torch.cat([x, model(x)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return x


def check_against_hf(model: GPT, hf_dir, vocab: int, seq: int = 96) -> None:
    hf = transformers.AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    assert isinstance(hf, transformers.GPT2LMHeadModel)
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()  # tied
    g = torch.Generator().manual_seed(11)
    tokens = torch.randint(0, vocab, (3, seq), generator=g)
    with torch.no_grad():
        ours, theirs = model(tokens), hf(tokens).logits
        assert (ours - theirs).abs().max().item() < 1e-4
        prompt = tokens[:2, :8]
        want = greedy(model, prompt, 12)
        got = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12,
                          do_sample=False, pad_token_id=0)
    assert torch.equal(got, want)


@pytest.mark.parametrize("overrides", [TINY, WIDE], ids=["tiny", "137m-width-2-layers"])
def test_to_hf_matches_transformers(tmp_path, overrides):
    cfg = make_config(overrides, tmp_path / "ckpt")
    model = random_model(cfg)
    save_training_checkpoint(cfg, model)
    summary = to_hf(tmp_path / "ckpt", tmp_path / "hf")
    hf_cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    m = cfg.model
    assert (hf_cfg["n_positions"], hf_cfg["n_embd"], hf_cfg["n_layer"], hf_cfg["n_head"]) == \
        (m.seq_len, m.d_model, m.n_layers, m.n_heads)
    assert hf_cfg["activation_function"] == "gelu" and hf_cfg["layer_norm_epsilon"] == m.ln_eps
    assert (tmp_path / "hf" / "generation_config.json").is_file()
    assert summary.parameters == sum(p.numel() for p in model.parameters())
    check_against_hf(model, tmp_path / "hf", m.vocab_size)


def test_wrong_qkv_layout_is_caught(tmp_path, tiny_ckpt):
    """The exactness check can fail: a plain transpose of qkv (no head permutation) is far off."""
    cfg, model, ckpt = tiny_ckpt
    to_hf(ckpt, tmp_path / "hf")
    path = tmp_path / "hf" / "model.safetensors"
    sd = load_file(path)
    from safetensors.torch import save_file

    sd["transformer.h.0.attn.c_attn.weight"] = model.layers["0"].attn.qkv.weight.detach().t().contiguous()
    save_file(sd, path, metadata={"format": "pt"})
    with pytest.raises(AssertionError):
        check_against_hf(model, tmp_path / "hf", cfg.model.vocab_size)


def test_roundtrip_from_hf_to_hf_is_bit_identical(tmp_path, tiny_ckpt):
    cfg, model, ckpt = tiny_ckpt
    to_hf(ckpt, tmp_path / "hf1")
    from_hf(tmp_path / "hf1", tmp_path / "ckpt2")
    to_hf(tmp_path / "ckpt2", tmp_path / "hf2")
    a, b = load_file(tmp_path / "hf1" / "model.safetensors"), load_file(tmp_path / "hf2" / "model.safetensors")
    assert a.keys() == b.keys() and len(a) == len(all_maps(cfg.model))
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert filecmp.cmp(tmp_path / "hf1" / "model.safetensors", tmp_path / "hf2" / "model.safetensors",
                       shallow=False)


def test_from_hf_of_a_transformers_model(tmp_path):
    """A GPT-2 model built and saved by transformers imports into our GPT with the same logits, and
    the checkpoint loads through the trainer's CheckpointManager (fresh optimizer)."""
    from hyperclova.config import load_config
    from hyperclova.train.checkpoint import CheckpointManager, TrainState
    from hyperclova.train.engine import ModelState
    from hyperclova.train.optim import Optimizers

    torch.manual_seed(3)
    hf_cfg = transformers.GPT2Config(vocab_size=512, n_positions=64, n_embd=96, n_layer=2, n_head=6,
                                     activation_function="gelu", layer_norm_epsilon=1e-6,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "ln" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.05)
    hf.save_pretrained(tmp_path / "hf")
    from_hf(tmp_path / "hf", tmp_path / "run" / "checkpoints", overrides=["train.lr=1e-4"])

    step_dir = tmp_path / "run" / "checkpoints" / "step_00000000"
    cfg = load_config(step_dir / "config.yaml")
    assert cfg.model.ln_eps == 1e-6 and cfg.model.n_heads == 6 and cfg.train.lr == 1e-4
    with torch.device("meta"):
        model = GPT(cfg.model)
    model.to_empty(device="cpu")
    model.tie_weights()
    opt = Optimizers([model], cfg, "cpu")
    logs = []
    mgr = CheckpointManager(cfg, {"model": ModelState([model]), "optim": opt, "train": TrainState()},
                            log=logs.append)
    loaded = mgr.load(step_dir)
    assert loaded == {"model"} and "optim" in logs[0]
    model.eval()
    tokens = torch.randint(0, 512, (2, 40))
    with torch.no_grad():
        assert (model(tokens) - hf(tokens).logits).abs().max().item() < 1e-4


@pytest.mark.parametrize("dtype,torch_dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_half_precision_exports_are_exact_casts(tmp_path, tiny_ckpt, dtype, torch_dtype):
    cfg, model, ckpt = tiny_ckpt
    to_hf(ckpt, tmp_path / "hf", dtype=dtype)
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["dtype"] == \
        {"bf16": "bfloat16", "fp16": "float16"}[dtype]
    sd = load_file(tmp_path / "hf" / "model.safetensors")
    ours = model.state_dict()
    for m in all_maps(cfg.model):
        want = m.to_hf(ours[m.ours], cfg.model.n_heads).to(torch_dtype)
        assert sd[m.hf].dtype == torch_dtype and torch.equal(sd[m.hf], want), m.hf
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch_dtype)
    assert hf.transformer.wte.weight.dtype == torch_dtype


def test_consolidate_serves_the_same_model(tmp_path, tiny_ckpt):
    cfg, model, ckpt = tiny_ckpt
    consolidate(ckpt, tmp_path / "model.safetensors")
    sd = load_file(tmp_path / "model.safetensors")
    assert set(sd) == {m.ours for m in all_maps(cfg.model)}  # weights only: no optimizer, no head
    served = load_consolidated(tmp_path / "model.safetensors").eval()
    tokens = torch.randint(0, cfg.model.vocab_size, (2, 32))
    with torch.no_grad():
        assert torch.equal(served(tokens), model(tokens))


def test_load_model_reads_every_form_of_a_trained_model(tmp_path, tiny_ckpt):
    """`hyperclova.generate.load_model` (what evaluation and serving load) gives the same logits
    from the DCP checkpoint, a `to-hf` export and a `consolidate` file."""
    from hyperclova.generate import load_model

    cfg, model, ckpt = tiny_ckpt
    to_hf(ckpt, tmp_path / "hf")
    consolidate(ckpt, tmp_path / "one.safetensors")
    tokens = torch.randint(0, cfg.model.vocab_size, (2, 24))
    with torch.no_grad():
        want = model(tokens)
        for src in (ckpt, tmp_path / "hf", tmp_path / "one.safetensors"):
            loaded, loaded_cfg = load_model(src)
            assert loaded_cfg.model.n_layers == cfg.model.n_layers
            assert loaded.lm_head.weight is loaded.tok_emb.weight
            assert torch.equal(loaded(tokens), want), src


def test_from_hf_reads_sharded_and_legacy_formats(tmp_path, tiny_ckpt):
    """A sharded safetensors index and an old-style pytorch_model.bin (no `transformer.` prefix,
    causal-mask buffers stored) import to the same tensors as model.safetensors."""
    _, _, ckpt = tiny_ckpt
    to_hf(ckpt, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="300KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "config.json").write_text((tmp_path / "hf" / "config.json").read_text())
    sd = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    sd["h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 8, 8))  # what GPT-2 checkpoints used to carry
    torch.save(sd, legacy / "pytorch_model.bin")

    from hyperclova.convert.dcp import CheckpointReader, resolve_step_dir

    def imported(src):
        from_hf(src, tmp_path / f"ck_{src.name}")
        reader = CheckpointReader(resolve_step_dir(tmp_path / f"ck_{src.name}"))
        return reader.load(reader.keys)

    want = imported(tmp_path / "hf")
    for src in (tmp_path / "sharded", legacy):
        got = imported(src)
        assert got.keys() == want.keys()
        for k in want:
            assert torch.equal(got[k], want[k]), (src.name, k)
