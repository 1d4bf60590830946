"""The one build path on one process: the weights are those of the plain model for the same
seed, bit for bit; model transforms run on the meta device before any parallelism; parameters a
transform adds are initialised by their module; nothing is allocated before materialisation."""
import pytest
import torch
import torch.nn as nn

from hyperclova.config import ConfigError, load_config
from hyperclova.model.gpt import GPT, build_model
from hyperclova.parallel.build import build_parts
from hyperclova.train.engine import build_engine

BASE = ["model=tiny", "model.n_layers=2", "train.device=cpu", "train.micro_batch_size=8"]


def test_engine_weights_equal_the_plain_model_bit_for_bit():
    cfg = load_config(None, BASE + ["parallel.recompute=full"])
    engine = build_engine(cfg)
    plain = build_model(cfg.model, seed=cfg.train.seed)
    mine = {n.replace("_checkpoint_wrapped_module.", ""): p for n, p in
            engine.model_parts[0].named_parameters()}
    for name, p in plain.named_parameters():
        assert torch.equal(mine[name], p), name
    part = engine.model_parts[0]
    assert part.lm_head.weight is part.tok_emb.weight  # tied again after materialisation


def test_seed_changes_every_parameter_and_names_decorrelate_them():
    cfg = load_config(None, BASE)
    a, b = build_model(cfg.model, seed=1), build_model(cfg.model, seed=2)
    assert not torch.equal(a.layers["0"].attn.qkv.weight, b.layers["0"].attn.qkv.weight)
    # same shape and std, different names: different draws
    assert not torch.equal(a.layers["0"].attn.proj.weight, a.layers["1"].attn.proj.weight)


class Adapter(nn.Module):
    """A LoRA-like module a transform adds: it initialises its own parameters."""

    def __init__(self, d):
        super().__init__()
        self.down = nn.Parameter(torch.empty(4, d))
        self.up = nn.Parameter(torch.empty(d, 4))

    def param_init(self, name, t, generator):
        nn.init.normal_(t, 0, 0.01, generator=generator) if name == "down" else nn.init.zeros_(t)


def test_model_transforms_run_on_meta_before_parallelism_and_init_their_parameters():
    cfg = load_config(None, BASE)
    seen = []

    def add_adapter(model: GPT):
        assert all(p.is_meta for p in model.parameters())  # nothing allocated yet
        assert type(model.layers["0"]) is type(model.layers["1"])  # no wrappers yet
        seen.append(model)
        model.layers["0"].adapter = Adapter(cfg.model.d_model)

    engine = build_engine(cfg, model_transforms=(add_adapter,))
    adapter = engine.model_parts[0].layers["0"].adapter
    assert seen and not adapter.down.is_meta
    assert adapter.down.abs().sum() > 0 and torch.all(adapter.up == 0)
    assert "layers.0.adapter.down" not in engine.base_names


def test_a_transform_parameter_without_initialiser_is_refused():
    cfg = load_config(None, BASE)

    def bad(model):
        model.layers["0"].extra = nn.Linear(4, 4)

    with pytest.raises(ValueError, match="param_init"):
        build_engine(cfg, model_transforms=(bad,))


def test_meta_build_allocates_nothing():
    cfg = load_config(None, ["model=82b", "train.device=cpu"])
    built = build_parts(cfg, torch.device("cpu"), materialize=False)
    assert all(p.is_meta for p in built.parts[0].parameters())


@pytest.mark.parametrize("overrides,needle", [
    (["parallel.async_tp=true"], "async_tp needs a CUDA device"),
    (["train.float8=true"], "float8 needs an NVIDIA GPU"),
    (["train.sdpa_backends=[flash,nope]"], "sdpa_backends"),
])
def test_features_that_cannot_run_here_are_refused_clearly(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        build_engine(load_config(None, BASE + overrides))


def test_compile_is_on_by_default_on_cuda_only():
    from hyperclova.parallel.build import compile_enabled

    cfg = load_config(None, BASE)
    assert compile_enabled(cfg, torch.device("cuda")) and not compile_enabled(cfg, torch.device("cpu"))
    off = load_config(None, BASE + ["parallel.compile=false"])
    assert not compile_enabled(off, torch.device("cuda"))


@pytest.mark.parametrize("capability,bf16", [((9, 0), True), ((8, 0), True), ((7, 0), False)])
def test_dtype_auto_and_attention_kernels_follow_the_gpu(monkeypatch, capability, bf16):
    """What a GPU's generation selects, with torch's own answers for it patched in (no GPU
    here): bf16 only where the GPU has it (an explicit bf16 elsewhere is refused), and cuDNN
    attention first from Hopper (sm90) on."""
    from torch.nn.attention import SDPBackend

    from hyperclova.parallel.build import autocast_dtype_for
    from hyperclova.train.engine import sdpa_backends

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "a test GPU")
    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    auto = load_config(None, BASE)
    assert autocast_dtype_for(auto, gpu) == (torch.bfloat16 if bf16 else None)
    assert autocast_dtype_for(auto, cpu) is None  # fp32 on CPU unless asked for
    explicit = load_config(None, BASE + ["train.dtype=bf16"])
    if bf16:
        assert autocast_dtype_for(explicit, gpu) == torch.bfloat16
    else:
        with pytest.raises(ConfigError, match="no bf16 support"):
            autocast_dtype_for(explicit, gpu)
    order = sdpa_backends(auto, gpu)
    assert (order is not None and order[0] == SDPBackend.CUDNN_ATTENTION) == (capability >= (9, 0))
    assert sdpa_backends(auto, cpu) is None
    chosen = load_config(None, BASE + ["train.sdpa_backends=[flash,math]"])
    assert sdpa_backends(chosen, gpu) == [SDPBackend.FLASH_ATTENTION, SDPBackend.MATH]
