import math

import pytest
import torch
import torch.nn.functional as F

from hyperclova.config import ModelConfig
from hyperclova.model.gpt import GPT, build_model, num_params
from hyperclova.model.presets import NOMINAL, PRESETS, TABLE_2, count_params


def small(**kw):
    base = dict(n_layers=2, d_model=64, n_heads=4, vocab_size=97, seq_len=32)
    return ModelConfig(**{**base, **kw})


@pytest.mark.parametrize("name", list(TABLE_2))
def test_table2_presets_exact_and_within_10_percent(name):
    L, d, h, _lr = TABLE_2[name]
    cfg = PRESETS[name]
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.seq_len, cfg.vocab_size) == (L, d, h, 2048, 64000)
    n = count_params(cfg)
    # exact count from the formula: embeddings (tied head) + per block (qkv, proj, fc1, fc2, 2 LN) + ln_f
    per_block = (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d) + 4 * d
    assert n == 64000 * d + 2048 * d + L * per_block + 2 * d
    assert abs(n / NOMINAL[name] - 1) <= 0.10


def test_table2_head_dims():
    assert [PRESETS[n].d_head for n in TABLE_2] == [48, 64, 96, 128, 128, 128, 128, 128]


def test_meta_build_allocates_nothing_and_shapes():
    with torch.device("meta"):
        model = GPT(PRESETS["82b"])
    assert all(p.is_meta for p in model.parameters())
    assert model.layers["63"].attn.qkv.weight.shape == (3 * 10240, 10240)
    assert list(model.layers) == [str(i) for i in range(64)]


def test_forward_shapes_and_tied_head():
    model = build_model(small(), seed=0)
    assert model.lm_head.weight is model.tok_emb.weight
    x = torch.randint(0, 97, (3, 16))
    assert model(x).shape == (3, 16, 97)
    assert num_params(model) == count_params(small())


def test_init_statistics_and_determinism():
    cfg = small(n_layers=8, d_model=256, vocab_size=1000)
    a, b = build_model(cfg, seed=1), build_model(cfg, seed=1)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), n
    assert abs(a.tok_emb.weight.std().item() - 0.02) < 0.002
    assert abs(a.layers["0"].attn.qkv.weight.std().item() - 0.02) < 0.002
    want = 0.02 / math.sqrt(2 * 8)
    assert abs(a.layers["0"].mlp.fc2.weight.std().item() - want) < 0.1 * want
    assert abs(a.layers["0"].attn.proj.weight.std().item() - want) < 0.1 * want
    assert torch.all(a.layers["0"].attn.qkv.bias == 0)
    assert torch.all(a.layers["0"].ln_1.weight == 1)
    c = build_model(cfg, seed=2)
    assert not torch.equal(a.tok_emb.weight, c.tok_emb.weight)


def test_causality():
    model = build_model(small(), seed=0)
    x = torch.randint(0, 97, (1, 12))
    y = x.clone()
    y[0, 8:] = (y[0, 8:] + 1) % 97
    assert torch.allclose(model(x)[0, :8], model(y)[0, :8], atol=1e-6)
    assert not torch.allclose(model(x)[0, 8:], model(y)[0, 8:])


def reference_block(block, x):
    """Attention written out by hand (no SDPA) to check the model's math."""
    B, T, C = x.shape
    h = block.ln_1(x)
    qkv = block.attn.qkv(h).view(B, T, -1, 3, block.attn.d_head)
    q, k, v = (t.transpose(1, 2) for t in qkv.unbind(3))
    att = (q @ k.transpose(-1, -2)) / math.sqrt(block.attn.d_head)
    att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
    x = x + block.attn.proj((att @ v).transpose(1, 2).reshape(B, T, C))
    return x + block.mlp.fc2(F.gelu(block.mlp.fc1(block.ln_2(x))))


def test_block_matches_reference_attention():
    model = build_model(small(), seed=0)
    x = torch.randn(2, 10, 64)
    block = model.layers["0"]
    assert torch.allclose(block(x), reference_block(block, x), atol=1e-5)


def test_stage_without_embedding_or_head():
    """Pipeline stages: first (embedding, no head) then last (no embedding, head) == whole."""
    cfg = small(n_layers=4)
    full = build_model(cfg, seed=0)
    first, last = build_model(cfg, seed=0), build_model(cfg, seed=0)
    for k in ("2", "3"):
        del first.layers[k]
    for k in ("0", "1"):
        del last.layers[k]
    first.ln_f = first.lm_head = None
    last.tok_emb = last.pos_emb = None
    x = torch.randint(0, 97, (2, 9))
    hidden = first(x)
    assert hidden.shape == (2, 9, 64)
    assert torch.allclose(last(hidden), full(x), atol=1e-6)
    assert list(last.layers) == ["2", "3"]
