"""Hugging Face GPT-2-architecture directory -> DCP checkpoint + config, ready to continue training.

Reads `config.json` and the weights (`model.safetensors`, a sharded `model.safetensors.index.json`,
or a legacy `pytorch_model.bin`), validates names and shapes against the config, and writes a step
directory in the trainer's layout with model weights only: the trainer then starts a fresh optimizer
(its checkpoint loader reports the missing optimizer state and starts it afresh).
Tensors are read one at a time, exactly when DCP's writer reaches them.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from hyperclova.config import Config, load_config
from hyperclova.convert.dcp import check_new_checkpoint_dir, write_step
from hyperclova.convert.hf import (
    HF_PREFIX,
    TIED_KEY,
    ConversionError,
    all_maps,
    check_shape,
    model_config_from_hf,
    unexpected_key_error,
)
from hyperclova.convert.to_hf import MODEL, Summary, dtype_of
from hyperclova.errors import UserError

# Buffers older GPT-2 checkpoints store (the causal mask); they are not weights.
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
_ARCH_FIELDS = ("n_layers", "d_model", "n_heads", "vocab_size", "seq_len", "ln_eps")


class HFWeights:
    """Names, shapes and lazy access to the tensors of an HF model directory, any storage format."""

    def __init__(self, hf_dir: Path):
        self.dir = hf_dir
        self._files: dict[str, Path] = {}  # our normalised HF name -> file holding it
        self._raw: dict[str, str] = {}  # normalised name -> name as stored
        self._shapes: dict[str, tuple[int, ...]] = {}  # raw name -> shape
        self._bin: dict[str, torch.Tensor] | None = None
        single, index, legacy = (hf_dir / "model.safetensors", hf_dir / "model.safetensors.index.json",
                                 hf_dir / "pytorch_model.bin")
        if single.is_file():
            self._add(self._scan(single), single)
        elif index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (ValueError, KeyError) as e:
                raise UserError(f"{index}: not a valid safetensors index ({e})") from None
            for fname in sorted(set(weight_map.values())):
                self._add(self._scan(hf_dir / fname), hf_dir / fname)
        elif legacy.is_file():
            # Legacy pickle format: mmap keeps it from being read into memory all at once.
            self._bin = torch.load(legacy, map_location="cpu", weights_only=True, mmap=True)
            self._shapes = {k: tuple(v.shape) for k, v in self._bin.items()}
            self._add(list(self._bin), legacy)
        else:
            raise UserError(f"{hf_dir}: no model.safetensors, model.safetensors.index.json or "
                            "pytorch_model.bin")

    def _scan(self, path: Path) -> list[str]:
        """Names and shapes from the header only."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                names = list(f.keys())
                self._shapes.update({n: tuple(f.get_slice(n).get_shape()) for n in names})
        except Exception as e:  # safetensors raises its own error types for a bad or missing file
            raise UserError(f"{path}: not a readable safetensors file ({e})") from None
        return names

    def _add(self, names: list[str], path: Path) -> None:
        for raw in names:
            name = raw if raw.startswith(HF_PREFIX) or raw == TIED_KEY else HF_PREFIX + raw
            if name.endswith(_IGNORED_SUFFIXES):
                continue
            self._files[name], self._raw[name] = path, raw

    @property
    def names(self) -> list[str]:
        return list(self._files)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._shapes[self._raw[name]]

    def get(self, name: str) -> torch.Tensor:
        if self._bin is not None:
            return self._bin[self._raw[name]]
        from safetensors import safe_open

        # Open per tensor: the file is memory-mapped while open, and a mapping kept open for the
        # whole conversion would end up holding every page of the file resident.
        with safe_open(str(self._files[name]), framework="pt") as f:
            return f.get_tensor(self._raw[name])


def read_hf_config(hf_dir: Path) -> dict:
    path = hf_dir / "config.json"
    if not path.is_file():
        raise UserError(f"{hf_dir}: no config.json; not a Hugging Face model directory")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


def check_hf_weights(weights: HFWeights, cfg, where: str) -> None:
    expected = {m.hf: m for m in all_maps(cfg)}
    for name in weights.names:
        if name == TIED_KEY:
            continue
        if name not in expected:
            raise unexpected_key_error(name, where)
    for name, m in expected.items():
        if name not in weights.names:
            raise ConversionError(f"{where}: tensor '{name}' (expected shape {m.hf_shape} from config.json) "
                                  "is missing")
        check_shape(name, weights.shape(name), m.hf_shape, where)
    if TIED_KEY in weights.names:
        head, emb = weights.get(TIED_KEY), weights.get(f"{HF_PREFIX}wte.weight")
        if head.shape != emb.shape or not torch.equal(head, emb):
            raise ConversionError(f"{where}: '{TIED_KEY}' {tuple(head.shape)} differs from "
                                  f"'{HF_PREFIX}wte.weight' {tuple(emb.shape)}: untied output heads are "
                                  "not supported")


def run_config(model_cfg, base_config: str | Path | None, overrides: list[str]) -> Config:
    """The training config to continue with: the base config (or defaults), the model section from
    the HF config, then the user's overrides, which may not change the architecture."""
    model_items = [f"model.{k}={json.dumps(v)}" for k, v in vars(model_cfg).items()]
    cfg = load_config(base_config, model_items + list(overrides))
    for field in _ARCH_FIELDS:
        got, want = getattr(cfg.model, field), getattr(model_cfg, field)
        if got != want:
            raise UserError(f"override model.{field}={got} contradicts the imported weights "
                            f"(config.json gives {want}); architecture fields cannot change")
    return cfg


def from_hf(hf_dir: str | Path, out_dir: str | Path, dtype: str = "fp32",
            base_config: str | Path | None = None, overrides: list[str] | None = None,
            allow_approx_gelu: bool = False) -> Summary:
    """Write `out_dir/step_00000000` (DCP, model only) + config.yaml + COMPLETE, and `latest`;
    `out_dir` must be new or empty."""
    src = Path(hf_dir)
    if not src.is_dir():
        raise UserError(f"{hf_dir}: no such directory")
    check_new_checkpoint_dir(Path(out_dir))  # before any work
    torch_dtype = dtype_of(dtype)
    model_cfg = model_config_from_hf(read_hf_config(src), str(src / "config.json"), allow_approx_gelu)
    weights = HFWeights(src)
    check_hf_weights(weights, model_cfg, str(src))
    cfg = run_config(model_cfg, base_config, overrides or [])
    notes = []
    if model_cfg.dropout != cfg.model.dropout:
        notes.append(f"dropout {cfg.model.dropout} (config.json had {model_cfg.dropout})")

    state, producers, n_params = {}, {}, 0
    for m in all_maps(model_cfg):
        state[m.ours] = torch.empty(m.shape, dtype=torch_dtype, device="meta")
        producers[MODEL + m.ours] = _producer(weights, m, model_cfg.n_heads, torch_dtype)
        n_params += torch.Size(m.shape).numel()
    final = write_step(Path(out_dir), 0, cfg, {"model": state}, producers)
    size = sum(p.stat().st_size for p in final.iterdir())
    return Summary(src, final, len(state), n_params, size, notes)


def load_hf_model(hf_dir: str | Path, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32, allow_approx_gelu: bool = False):
    """Our GPT with the weights of a GPT-2-architecture HF directory (a `to-hf` export), in memory:
    for evaluating or serving an export without writing a checkpoint. Returns (GPT, ModelConfig)."""
    from hyperclova.model.gpt import GPT

    src = Path(hf_dir)
    model_cfg = model_config_from_hf(read_hf_config(src), str(src / "config.json"), allow_approx_gelu)
    weights = HFWeights(src)
    check_hf_weights(weights, model_cfg, str(src))
    with torch.device("meta"):
        model = GPT(model_cfg)
    state = {m.ours: m.from_hf(weights.get(m.hf), model_cfg.n_heads).to(device=device, dtype=dtype)
             for m in all_maps(model_cfg)}
    model.load_state_dict(state, strict=False, assign=True)  # the tied head is set below
    model.tie_weights()
    return model, model_cfg


def _producer(weights: HFWeights, m, n_heads: int, dtype: torch.dtype):
    return lambda: m.from_hf(weights.get(m.hf), n_heads).to(dtype)
