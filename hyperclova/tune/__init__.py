"""Tuning a frozen pre-trained model: LoRA and P-tuning (or full fine-tuning) on a task.

    python -m hyperclova.tune --config configs/tune/nsmc_ptuning.yaml --checkpoint runs/1.3b/checkpoints

Modules (docs/tune.md): `lora` and `ptuning` (the adapters, applied to the meta model through the
engine's model-transform hook), `adapters` (freezing, tuned checkpoints, inference loading),
`data` (task examples encoded as evaluation scores them), `trainer` (the run), `demo`.
A tuned model for inference: `hyperclova.generate.load_model(base_or_None, adapter=DIR)`.
"""
from hyperclova.tune.adapters import open_adapter

__all__ = ["open_adapter"]
