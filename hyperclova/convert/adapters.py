"""Tuned checkpoints (hyperclova.tune) out of hyperclova: merged, as a peft LoRA adapter, or as
stored P-tuning prompt embeddings.

    merge_adapter(adapter, out_dir)    LoRA (or full fine-tuning) + its base -> a plain DCP
                                       checkpoint of the tuned model (then `to_hf` as usual)
    export_peft(adapter, out_dir)      LoRA -> adapter_config.json + adapter_model.safetensors for
                                       peft's PeftModel on a `to_hf` export of the base
    export_prompts(adapter, out_dir)   P-tuning -> prompt_embeddings.safetensors + prompt_config.json

Our LoRA factors map onto peft's for GPT-2 one to one: A (r, d_in) and B (d_out, r) on `c_attn`,
`attn.c_proj`, `c_fc` and `mlp.c_proj` (GPT-2's Conv1D layers, `fan_in_fan_out`), with the same
scale alpha / r. Only the qkv layer's output order differs (ours head by head, GPT-2's all q | all
k | all v): B's rows are regrouped exactly as the base weight's are (hyperclova/convert/hf.py).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from hyperclova.convert.dcp import CheckpointReader, check_new_checkpoint_dir, nested, write_step
from hyperclova.convert.hf import HF_PREFIX, ConversionError, qkv_to_hf
from hyperclova.convert.reshard import step_of
from hyperclova.convert.to_hf import MODEL, Summary, check_model_keys
from hyperclova.errors import UserError

# Our LoRA targets -> the GPT-2 module (relative to transformer.h.{i}) and whether it is qkv.
HF_TARGETS = {"qkv": ("attn.c_attn", True), "proj": ("attn.c_proj", False),
              "fc1": ("mlp.c_fc", False), "fc2": ("mlp.c_proj", False)}
OUR_PATHS = {"qkv": "attn.qkv", "proj": "attn.proj", "fc1": "mlp.fc1", "fc2": "mlp.fc2"}
PEFT_PREFIX = "base_model.model."


def _open(adapter: str | Path, methods: tuple[str, ...], what: str):
    from hyperclova.tune.adapters import open_adapter

    ad = open_adapter(adapter)
    if ad.method not in methods:
        hint = {"ptuning": "P-tuning adds virtual tokens, not weights: export its prompt "
                           "embeddings with export-prompts",
                "lora": "use merge-adapter or export-peft",
                "full": "a fully fine-tuned checkpoint is a whole model: use to-hf on it"}[ad.method]
        raise UserError(f"{ad.path}: {what} does not apply to a {ad.method} checkpoint; {hint}")
    return ad


def _lora_factors(ad) -> dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]:
    """(layer, target) -> (A, B) as full fp32 tensors."""
    reader = CheckpointReader(ad.path)
    sd = reader.load(reader.group_keys("model"))
    out = {}
    for i in range(ad.cfg.model.n_layers):
        for t in ad.cfg.tune.lora.targets:
            k = f"{MODEL}layers.{i}.{OUR_PATHS[t]}"
            try:
                out[i, t] = (sd[f"{k}.lora_A.weight"].float(), sd[f"{k}.lora_B.weight"].float())
            except KeyError as e:
                raise ConversionError(f"{ad.path}: LoRA factor {e.args[0]} is missing") from None
    return out


def merge_adapter(adapter: str | Path, out_dir: str | Path,
                  checkpoint: Optional[str | Path] = None) -> Summary:
    """The tuned model as an ordinary checkpoint (model weights only, in `out_dir/step_N`):
    each adapted weight W + (alpha / r) B A, the rest of the base as it is. Streams the base a
    tensor at a time; the factors are small."""
    from hyperclova.config import load_config
    from hyperclova.tune.adapters import resolve_base

    check_new_checkpoint_dir(Path(out_dir))  # before any work
    ad = _open(adapter, ("lora", "full"), "merge-adapter")
    base = resolve_base(ad, checkpoint)
    source = ad.path if ad.method == "full" else base  # full: the tuned checkpoint is the model
    cfg = load_config(base / "config.yaml")
    reader = CheckpointReader(source)
    check_model_keys(reader, cfg.model)
    deltas = {}
    if ad.method == "lora":
        scale = ad.cfg.tune.lora.alpha / ad.cfg.tune.lora.rank
        for (i, t), (a, b) in _lora_factors(ad).items():
            deltas[f"{MODEL}layers.{i}.{OUR_PATHS[t]}.weight"] = (b @ a) * scale

    def producer(key: str):
        def make():
            t = reader.load([key])[key]
            return (t.float() + deltas[key]).to(t.dtype) if key in deltas else t
        return make

    flat, producers = {}, {}
    for key in reader.group_keys("model"):
        md = reader.tensor_meta(key)
        flat[key] = torch.empty(md.size, dtype=md.properties.dtype, device="meta")
        producers[key] = producer(key)
    cfg.data.tokenizer = ad.cfg.data.tokenizer or cfg.data.tokenizer
    step = step_of(ad.path)
    final = write_step(Path(out_dir), step, cfg, nested(flat, reader.nesting()), producers)
    n = sum(flat[k].numel() for k in flat)
    size = sum(p.stat().st_size for p in final.iterdir())
    notes = [f"{len(deltas)} LoRA updates folded in"] if deltas else []
    return Summary(ad.path, final, len(flat), n, size, notes)


def peft_target_modules(targets: list[str]):
    """peft's `target_modules`: GPT-2 leaf names when they say exactly which layers (c_proj is
    both the attention's and the MLP's output), else a regex over full module names."""
    leaves = {HF_TARGETS[t][0].split(".")[1] for t in targets}
    if ("proj" in targets) == ("fc2" in targets):
        return sorted(leaves)
    alts = "|".join(HF_TARGETS[t][0].replace(".", r"\.") for t in targets)
    return rf".*\.h\.\d+\.({alts})"


def export_peft(adapter: str | Path, out_dir: str | Path,
                base_model_name_or_path: Optional[str] = None) -> Summary:
    """A LoRA checkpoint as a peft adapter directory for the base's `to-hf` export."""
    from safetensors.torch import save_file

    out = _new_or_empty(out_dir)
    ad = _open(adapter, ("lora",), "export-peft")
    lora, mc = ad.cfg.tune.lora, ad.cfg.model
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for (i, t), (a, b) in _lora_factors(ad).items():
        hf, is_qkv = HF_TARGETS[t]
        name = f"{PEFT_PREFIX}{HF_PREFIX}h.{i}.{hf}"
        # B's rows are output features: regrouped like c_attn's columns (q | k | v).
        tensors[f"{name}.lora_A.weight"] = a.contiguous()
        tensors[f"{name}.lora_B.weight"] = (qkv_to_hf(b, mc.n_heads).t().contiguous()
                                            if is_qkv else b.contiguous())
    save_file(tensors, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": lora.rank, "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout, "target_modules": peft_target_modules(lora.targets),
        "fan_in_fan_out": True, "bias": "none", "use_rslora": False, "use_dora": False,
        "init_lora_weights": True, "inference_mode": True, "modules_to_save": None,
        "base_model_name_or_path": base_model_name_or_path or ad.cfg.tune.base,
    }
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    n = sum(t.numel() for t in tensors.values())
    return Summary(ad.path, out, len(tensors), n, (out / "adapter_model.safetensors").stat().st_size,
                   [f"load with PeftModel.from_pretrained(<to-hf export of {ad.cfg.tune.base}>, "
                    f"{out})"])


PROMPT_FILE, PROMPT_CONFIG = "prompt_embeddings.safetensors", "prompt_config.json"


def export_prompts(adapter: str | Path, out_dir: str | Path) -> Summary:
    """A P-tuning checkpoint's stored prompt embeddings, (virtual tokens, d_model) fp32, and how
    they are placed: `[P]*a input [P]*b` with a, b = template (docs/tune.md has the loader)."""
    from safetensors.torch import save_file

    from hyperclova.tune.adapters import prompt_table

    out = _new_or_empty(out_dir)
    ad = _open(adapter, ("ptuning",), "export-prompts")
    table = prompt_table(ad).contiguous()
    out.mkdir(parents=True, exist_ok=True)
    save_file({"prompt_embeddings": table}, str(out / PROMPT_FILE), metadata={"format": "pt"})
    a, b = ad.cfg.tune.ptuning.template
    config = {"num_virtual_tokens": a + b, "template": [a, b], "d_model": int(table.size(1)),
              "layout": "[P]*template[0] input [P]*template[1] answer",
              "base": ad.cfg.tune.base, "base_fingerprint": ad.cfg.tune.base_fingerprint,
              "task": ad.cfg.tune.task, "doc_to_text": ad.cfg.tune.doc_to_text}
    (out / PROMPT_CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                     encoding="utf-8")
    return Summary(ad.path, out, 1, table.numel(), (out / PROMPT_FILE).stat().st_size, [])


def _new_or_empty(out_dir: str | Path) -> Path:
    """Exports go into a new or empty directory (as every conversion's output): files left from
    another adapter beside the new ones would make a directory peft or a loader misreads."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "is a file" if not out.is_dir() else \
            "is not empty (" + ", ".join(sorted(p.name for p in out.iterdir())[:4]) + ")"
        raise UserError(f"output directory {out} {what}; export into a new or empty directory")
    return out
