"""DCP checkpoint -> Hugging Face directory (`to_hf`) or one safetensors file of weights (`consolidate`).

Both stream: the checkpoint is read a layer at a time and written through a safetensors writer
that never holds more than the tensor being written.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from hyperclova.config import Config, ModelConfig, from_dict, to_dict
from hyperclova.convert.dcp import CheckpointReader, read_run_config, resolve_step_dir
from hyperclova.convert.hf import (
    TIED_KEY,
    ConversionError,
    TensorMap,
    all_maps,
    check_shape,
    generation_config,
    hf_config,
    tensor_groups,
    unexpected_key_error,
)
from hyperclova.convert.safetensors_io import StreamingSafetensorsWriter
from hyperclova.convert.tokenizer_files import copy_tokenizer
from hyperclova.errors import UserError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
HF_DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
MODEL = "model."  # the trainer saves model weights under the "model" group
CONFIG_METADATA_KEY = "hyperclova_model_config"  # consolidated file: the model section as JSON


@dataclass
class Summary:
    source: Path
    output: Path
    tensors: int
    parameters: int
    bytes_written: int
    notes: list[str]


def dtype_of(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise UserError(f"--dtype {name!r}: choose one of {', '.join(DTYPES)}")
    return DTYPES[name]


def check_model_keys(reader: CheckpointReader, cfg: ModelConfig) -> None:
    """Every tensor the config implies is present with its shape; nothing unknown is present."""
    where = str(reader.path)
    expected = {MODEL + m.ours: m for m in all_maps(cfg)}
    present = reader.group_keys("model")
    if not present:
        raise ConversionError(f"{where}: the checkpoint has no 'model' weights")
    for key in present:
        if key == MODEL + TIED_KEY:
            continue  # checked below: it must equal the embedding
        if key not in expected:
            raise unexpected_key_error(key[len(MODEL):], where)
    for key, m in expected.items():
        md = reader.tensor_meta(key)
        if md is None:
            raise ConversionError(f"{where}: tensor '{m.ours}' (expected shape {m.shape} from config.yaml) "
                                  "is missing from the checkpoint")
        check_shape(m.ours, tuple(md.size), m.shape, where)
    if MODEL + TIED_KEY in present:
        sd = reader.load([MODEL + TIED_KEY, MODEL + "tok_emb.weight"])
        head, emb = sd[MODEL + TIED_KEY], sd[MODEL + "tok_emb.weight"]
        if head.shape != emb.shape or not torch.equal(head, emb):
            raise ConversionError(f"{where}: '{TIED_KEY}' {tuple(head.shape)} differs from 'tok_emb.weight' "
                                  f"{tuple(emb.shape)}: untied output heads are not supported")


def model_tensors(reader: CheckpointReader, cfg: ModelConfig) -> Iterator[tuple[TensorMap, torch.Tensor]]:
    """(mapping, full tensor) for every weight, loading one group (a layer) at a time."""
    for group in tensor_groups(cfg):
        sd = reader.load([MODEL + m.ours for m in group])
        for m in group:
            yield m, sd.pop(MODEL + m.ours)


def open_checkpoint(checkpoint: str | Path, config_path: str | Path | None) -> tuple[CheckpointReader, Config]:
    step_dir = resolve_step_dir(checkpoint)
    cfg = read_run_config(step_dir, config_path)
    reader = CheckpointReader(step_dir)
    check_model_keys(reader, cfg.model)
    return reader, cfg


def to_hf(checkpoint: str | Path, out_dir: str | Path, dtype: str = "fp32",
          tokenizer_dir: str | Path | None = None, config_path: str | Path | None = None) -> Summary:
    """Write a transformers GPT2LMHeadModel directory: config.json, generation_config.json,
    model.safetensors (tied head omitted, as transformers itself saves it) and the tokenizer."""
    torch_dtype = dtype_of(dtype)
    reader, cfg = open_checkpoint(checkpoint, config_path)
    mc = cfg.model
    out = _prepare_out_dir(out_dir, "model.safetensors")
    notes: list[str] = []
    bos = eos = None
    if tokenizer_dir is not None:
        info = copy_tokenizer(Path(tokenizer_dir), out, mc.vocab_size, mc.seq_len)
        bos, eos = info.bos_token_id, info.eos_token_id
        notes.extend(info.notes)
    else:
        notes.append("no --tokenizer given: the directory has weights and config only")
    specs = [(m.hf, m.hf_shape, torch_dtype) for m in all_maps(mc)]
    n_params = 0
    with StreamingSafetensorsWriter(out / "model.safetensors", specs, metadata={"format": "pt"}) as w:
        for m, t in model_tensors(reader, mc):
            w.write(m.hf, m.to_hf(t, mc.n_heads).to(torch_dtype))
            n_params += t.numel()
    _write_json(out / "config.json", hf_config(mc, bos, eos, HF_DTYPE_NAMES[dtype]))
    _write_json(out / "generation_config.json", generation_config(bos, eos))
    return Summary(reader.path, out, len(specs), n_params, (out / "model.safetensors").stat().st_size, notes)


def consolidate(checkpoint: str | Path, out_file: str | Path, dtype: str = "fp32",
                config_path: str | Path | None = None) -> Summary:
    """One safetensors file of model weights only, under our own names (`tok_emb.weight`, ...),
    with the model config in the file's metadata: what inference needs, nothing else."""
    torch_dtype = dtype_of(dtype)
    reader, cfg = open_checkpoint(checkpoint, config_path)
    mc = cfg.model
    out = Path(out_file)
    if out.suffix != ".safetensors":
        raise UserError(f"{out_file}: the output file name must end in .safetensors")
    if out.exists():
        raise UserError(f"{out_file} already exists; remove it or choose another name")
    out.parent.mkdir(parents=True, exist_ok=True)
    specs = [(m.ours, m.shape, torch_dtype) for m in all_maps(mc)]
    meta = {"format": "pt", CONFIG_METADATA_KEY: json.dumps(to_dict(mc))}
    n_params = 0
    with StreamingSafetensorsWriter(out, specs, metadata=meta) as w:
        for m, t in model_tensors(reader, mc):
            w.write(m.ours, t.to(torch_dtype))
            n_params += t.numel()
    return Summary(reader.path, out, len(specs), n_params, out.stat().st_size, [])


def load_consolidated(path: str | Path, device: str | torch.device = "cpu"):
    """Build our GPT from a `consolidate` file (the inverse, for serving with hyperclova)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from hyperclova.model.gpt import GPT

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if CONFIG_METADATA_KEY not in meta:
        raise UserError(f"{path}: no '{CONFIG_METADATA_KEY}' metadata; not written by `consolidate`")
    mc = from_dict(ModelConfig, json.loads(meta[CONFIG_METADATA_KEY]), prefix="model")
    with torch.device("meta"):
        model = GPT(mc)
    sd = load_file(str(path), device=str(device))
    result = model.load_state_dict(sd, strict=False, assign=True)
    if result.unexpected_keys or set(result.missing_keys) != {TIED_KEY}:
        raise UserError(f"{path}: weights do not match the model config (missing "
                        f"{sorted(set(result.missing_keys) - {TIED_KEY})}, unexpected {result.unexpected_keys})")
    model.tie_weights()
    return model


def _prepare_out_dir(out_dir: str | Path, main_file: str) -> Path:
    out = Path(out_dir)
    if (out / main_file).exists():
        raise UserError(f"{out / main_file} already exists; choose an empty output directory")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
