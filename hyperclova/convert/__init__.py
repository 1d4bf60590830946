"""Checkpoint conversion: to and from Hugging Face transformers, consolidation, offline resharding.

    to_hf(checkpoint, out_dir, dtype)        DCP (any layout) -> GPT2LMHeadModel directory
    from_hf(hf_dir, out_dir)                 GPT-2-architecture directory -> DCP + config.yaml
    consolidate(checkpoint, out_file)        DCP -> one safetensors file of model weights
    reshard(checkpoint, out_dir, overrides)  DCP -> DCP rewritten layout-free for a new layout
    merge_adapter / export_peft / export_prompts   tuned checkpoints (hyperclova.tune) out

Everything streams tensor by tensor; see tools/convert_checkpoint.py for the command line.
"""
from hyperclova.convert.adapters import export_peft, export_prompts, merge_adapter
from hyperclova.convert.from_hf import from_hf
from hyperclova.convert.reshard import reshard
from hyperclova.convert.to_hf import Summary, consolidate, load_consolidated, to_hf

__all__ = ["Summary", "consolidate", "export_peft", "export_prompts", "from_hf", "load_consolidated",
           "merge_adapter", "reshard", "to_hf"]
