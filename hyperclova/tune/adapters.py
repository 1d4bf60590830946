"""Adapters applied to the model, and tuned checkpoints read back for inference.

Tuning (docs/tune.md) builds the model through the engine with `model_transforms(cfg, device)`:
on the meta model, the base weights are frozen (and held in bf16 when asked: no fp32 copy, no
optimizer state) and LoRA or a P-tuning encoder is added. A tuned checkpoint stores only what was
trained (and its optimizer state), with `tune.base` and `tune.base_fingerprint` in its
config.yaml naming the frozen base it belongs to; `open_adapter` + `resolve_base` refuse another
base. For inference the adapter is applied the same way (`inference_transforms`): LoRA layers get
their trained factors, P-tuning's encoder is run once and only its output table is kept; the
single-process model comes from the one loader, `hyperclova.generate.load_model(..., adapter=)`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from hyperclova.config import Config, load_config
from hyperclova.errors import UserError
from hyperclova.model.gpt import GPT
from hyperclova.parallel.build import ModelTransform, autocast_dtype_for, plain_name

METHODS = ("lora", "ptuning", "full")


# --- building the model to tune ----------------------------------------------------------------

def frozen_dtype(cfg: Config, device: torch.device) -> torch.dtype:
    """The dtype the frozen base weights are stored in (tune.base_dtype)."""
    if cfg.tune.method == "full" or cfg.tune.base_dtype == "fp32":
        return torch.float32
    if cfg.tune.base_dtype == "bf16":
        return torch.bfloat16
    return autocast_dtype_for(cfg, device) or torch.float32


def freeze(model: GPT, dtype: torch.dtype = torch.float32) -> None:
    """No gradients for any parameter of `model`; stored in `dtype` (before adapters exist)."""
    for p in model.parameters():
        p.requires_grad_(False)
    if dtype != torch.float32:
        model.to(dtype)
        model.tie_weights()


def model_transforms(cfg: Config, device: torch.device) -> tuple[ModelTransform, ...]:
    """The engine's model transforms for tuning `cfg.tune.method` (none for full fine-tuning)."""
    from hyperclova.tune.lora import add_lora
    from hyperclova.tune.ptuning import add_ptuning

    t = cfg.tune
    if t.method == "full":
        return ()
    dtype = frozen_dtype(cfg, device)
    add = (lambda m: add_lora(m, t.lora)) if t.method == "lora" else (lambda m: add_ptuning(m, t.ptuning))
    return (lambda m: freeze(m, dtype), add)


def trainable_names(parts: list[nn.Module]) -> set[str]:
    """Checkpoint keys (plain-model names) of the trainable parameters held by `parts`."""
    from hyperclova.train.engine import to_checkpoint_keys

    names = set()
    for part in parts:
        own = {plain_name(n): None for n, p in part.named_parameters() if p.requires_grad}
        names |= set(to_checkpoint_keys(part, own))
    return names


def count_trainable(model: nn.Module) -> tuple[int, int]:
    """(trainable, all) parameter counts of a whole model (tied weights once)."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


# --- the base a tuned checkpoint belongs to ----------------------------------------------------

def fingerprint(step_dir: str | Path) -> str:
    """Identifies a complete checkpoint: a hash of its COMPLETE marker (step and every file's
    size) and its config.yaml."""
    from hyperclova.train.checkpoint import MARKER

    h = hashlib.sha256()
    for name in (MARKER, "config.yaml"):
        f = Path(step_dir) / name
        h.update(f.read_bytes() if f.is_file() else b"")
    return h.hexdigest()[:16]


@dataclass
class Adapter:
    path: Path  # the tuned checkpoint's step directory
    cfg: Config  # its config.yaml: model, tune (method, lora/ptuning, base), data.tokenizer

    @property
    def method(self) -> str:
        return self.cfg.tune.method


def open_adapter(path: str | Path) -> Adapter:
    """A tuned checkpoint (run dir with `latest`, or a step dir) written by hyperclova.tune."""
    from hyperclova.train.checkpoint import resolve_load_path

    step = resolve_load_path(path)
    cfg = load_config(step / "config.yaml")
    if not cfg.tune.base or not cfg.tune.base_fingerprint:
        raise UserError(f"{step}: not a tuned checkpoint (its config.yaml names no tune.base); "
                        "pass it as --checkpoint instead")
    return Adapter(step, cfg)


def resolve_base(adapter: Adapter, checkpoint: Optional[str | Path] = None) -> Path:
    """The base checkpoint's step directory: `checkpoint` when given, else the one the adapter
    names; either way it must be the checkpoint the adapter was tuned on."""
    from hyperclova.train.checkpoint import resolve_load_path

    t = adapter.cfg.tune
    given = checkpoint is not None
    try:
        base = resolve_load_path(checkpoint if given else t.base)
    except UserError as e:
        if given:
            raise
        raise UserError(f"{adapter.path} was tuned on {t.base}, which is not readable ({e}); "
                        "pass the base checkpoint with --checkpoint") from None
    got = fingerprint(base)
    if got != t.base_fingerprint:
        raise UserError(f"{adapter.path} was tuned on the base checkpoint {t.base} (fingerprint "
                        f"{t.base_fingerprint}), not on {base} (fingerprint {got}): an adapter only "
                        "fits the weights it was trained with")
    return base


# --- inference ---------------------------------------------------------------------------------

def saved_model_keys(step_dir: Path) -> set[str]:
    import torch.distributed.checkpoint as dcp

    meta = dcp.FileSystemReader(str(step_dir)).read_metadata()
    return {k.split(".", 1)[1] for k in meta.state_dict_metadata if k.startswith("model.")}


def load_model_keys(parts: list[nn.Module], step_dir: Path) -> set[str]:
    """Load into `parts` every model weight `step_dir` holds that they have; returns the keys."""
    import torch.distributed.checkpoint as dcp

    from hyperclova.train.checkpoint import single_process
    from hyperclova.train.engine import ModelState

    keys = saved_model_keys(step_dir) & set(ModelState(parts).state_dict())
    if keys:
        with single_process():
            dcp.load({"model": ModelState(parts, keys=keys)}, checkpoint_id=str(step_dir))
    return keys


@torch.no_grad()
def prompt_table(adapter: Adapter) -> torch.Tensor:
    """The trained P-tuning encoder's output, (virtual tokens, d_model), fp32, computed once."""
    from hyperclova.tune.ptuning import add_ptuning

    holder = nn.Module()  # with the tuned model's keys: input_adapter.encoder.*
    holder.cfg = adapter.cfg.model
    with torch.device("meta"):
        add_ptuning(holder, adapter.cfg.tune.ptuning)
    holder.to_empty(device="cpu")
    wanted = {n for n, _ in holder.named_parameters()}
    if load_model_keys([holder], adapter.path) != wanted:
        raise UserError(f"{adapter.path}: the P-tuning checkpoint lacks some of the prompt "
                        f"encoder's weights {sorted(wanted)}")
    return holder.input_adapter.encoder().float()


def inference_transforms(adapter: Adapter) -> tuple[ModelTransform, ...]:
    """Model transforms that give a (meta) base model the adapter's structure for inference; the
    trained weights come from `load_adapter_weights` (P-tuning's table is built in)."""
    from hyperclova.tune.lora import add_lora
    from hyperclova.tune.ptuning import add_stored_prompts

    if adapter.method == "lora":
        return (lambda m: add_lora(m, adapter.cfg.tune.lora),)
    if adapter.method == "ptuning":
        table = prompt_table(adapter)
        return (lambda m: add_stored_prompts(m, table),)
    return ()


def load_adapter_weights(parts: list[nn.Module], adapter: Adapter) -> None:
    """The adapter's trained weights into model parts built with `inference_transforms`."""
    if adapter.method != "ptuning":
        load_model_keys(parts, adapter.path)


def adapter_tokenizer(cfg: Optional[Config], tok):
    """The tokenizer to encode text for a model tuned with `cfg` (None: no adapter): P-tuning's
    reads its virtual-token markers."""
    from hyperclova.tune.ptuning import PromptTokenizer, n_virtual

    if cfg is None or cfg.tune.method != "ptuning":
        return tok
    return PromptTokenizer(tok, cfg.model.vocab_size, n_virtual(cfg.tune.ptuning))


def tuned_task(spec, cfg: Config):
    """The task as tuning and inference with an adapter see it: `tune.doc_to_text` replaces the
    input template, and P-tuning places its virtual tokens around the context: the input, or,
    for a task scored the channel way (the label word is the context, the text is scored), the
    label word."""
    from hyperclova.tune.ptuning import wrap_template

    text = cfg.tune.doc_to_text if cfg.tune.doc_to_text is not None else spec.doc_to_text
    spec = spec.replace(doc_to_text=text)
    if cfg.tune.method != "ptuning":
        return spec
    pt = cfg.tune.ptuning
    if spec.output_type == "multiple_choice" and spec.scoring == "channel":
        return spec.replace(doc_to_choice={k: wrap_template(w, pt) for k, w in spec.doc_to_choice.items()})
    return spec.replace(doc_to_text=wrap_template(text, pt))


def wrap_prompt(cfg: Optional[Config], text: str) -> str:
    """A free-text prompt (generation, serving) as a model tuned with `cfg` reads it."""
    from hyperclova.tune.ptuning import wrap_template

    if cfg is None or cfg.tune.method != "ptuning":
        return text
    return wrap_template(text, cfg.tune.ptuning)
