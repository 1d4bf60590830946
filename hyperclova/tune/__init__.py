"""Tuning a frozen pre-trained model: LoRA and P-tuning (or full fine-tuning) on a task.

    python -m hyperclova.tune --config configs/tune/nsmc_ptuning.yaml --checkpoint runs/1.3b/checkpoints

Modules (docs/tune.md): `lora` and `ptuning` (the adapters, applied to the meta model through the
engine's model-transform hook), `adapters` (freezing, tuned checkpoints, inference loading),
`data` (task examples encoded as evaluation scores them), `trainer` (the run), `demo`.
"""
from hyperclova.tune.adapters import load_tuned_model, open_adapter

__all__ = ["load_tuned_model", "open_adapter"]
