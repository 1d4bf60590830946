"""The tuning run: pre-training's loop (hyperclova/train/trainer.py) on a frozen base with adapters.

    python -m hyperclova.tune --config configs/tune/nsmc_lora.yaml --checkpoint runs/1.3b/checkpoints
    torchrun --nproc_per_node 8 -m hyperclova.tune --config ... --checkpoint ... parallel.tp=2

What differs from pre-training:
- the config's `model` section (and `data.tokenizer`) come from the base checkpoint;
- the engine builds the model with the adapter transforms (hyperclova/tune/adapters.py), so every
  layout (dp, FSDP, tp, pp) and launcher works as in pre-training;
- the base weights are loaded first; a tuned checkpoint holds only the trained parameters and
  their optimizer state (with the loop position and RNG: resuming is exact), and its config.yaml
  names the base (`tune.base`, `tune.base_fingerprint`);
- the data are the task's examples (hyperclova/tune/data.py), loss on the target tokens only.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from hyperclova.config import Config, ConfigError, load_config, to_dict
from hyperclova.errors import UserError
from hyperclova.train.checkpoint import find_resumable, resolve_load_path
from hyperclova.train.engine import ModelState, resolve_device
from hyperclova.train.trainer import Trainer, train
from hyperclova.tune.adapters import count_trainable, fingerprint, model_transforms, trainable_names

# What tuning may change in the base model's section: nothing that shapes the weights.
MUTABLE_MODEL_KEYS = {"dropout"}


def tune_config(config: Optional[str], checkpoint: str, overrides: list[str] = (),
                train_samples: Optional[int] = None) -> Config:
    """The run's config: the base checkpoint's model section and tokenizer, then the tuning YAML
    and the overrides; `tune.base` points at the base (resolved to its step directory)."""
    try:
        base = resolve_load_path(checkpoint)
    except UserError as e:
        raise UserError(f"--checkpoint: {e}") from None
    base_cfg = load_config(base / "config.yaml")
    model = to_dict(base_cfg.model)
    inherited = [f"model.{k}={json.dumps(v)}" for k, v in model.items()]
    if base_cfg.data.tokenizer:
        inherited.append(f"data.tokenizer={json.dumps(base_cfg.data.tokenizer)}")
    extra = [f"tune.train_samples={train_samples}"] if train_samples is not None else []
    cfg = load_config(config, inherited + list(overrides) + extra)
    for key, value in model.items():
        if key not in MUTABLE_MODEL_KEYS and getattr(cfg.model, key) != value:
            raise ConfigError(f"model.{key}: the model comes from the base checkpoint {base} "
                              f"({key}={value}); tuning cannot change it")
    if not cfg.data.tokenizer:
        raise ConfigError(f"data.tokenizer: the base checkpoint {base} names no tokenizer; set "
                          "data.tokenizer=DIR")
    cfg.tune.base = str(base.resolve())
    cfg.tune.base_fingerprint = fingerprint(base)
    return cfg


def describe_trainable(cfg: Config) -> str:
    """'N trainable of M parameters (x%)', counted on the meta device."""
    from hyperclova.model.gpt import GPT

    with torch.device("meta"):
        model = GPT(cfg.model)
    for fn in model_transforms(cfg, torch.device("cpu")):
        fn(model)
    n, total = count_trainable(model)
    return f"{n:,} trainable of {total:,} parameters ({100 * n / total:.3g}%)"


class Tuner(Trainer):
    def __init__(self, cfg: Config):
        super().__init__(cfg, model_transforms(cfg, resolve_device(cfg)))
        parts = self.engine.model_parts
        if cfg.tune.method != "full":  # checkpoints hold the trained parameters only
            self.ckpt.states["model"] = ModelState(parts, keys=trainable_names(parts))
        t = cfg.tune
        what = {"lora": f"LoRA rank {t.lora.rank} on {','.join(t.lora.targets)}",
                "ptuning": f"P-tuning, template {t.ptuning.template}, {t.ptuning.encoder} encoder",
                "full": "full fine-tuning"}[t.method]
        self.print(f"tuning {t.task}: {what}; {describe_trainable(cfg)}; base {t.base}")

    def restore(self):
        base = Path(self.cfg.tune.base)
        self.engine.load_weights(base)
        if self.cfg.checkpoint.resume:
            self._check_same_base()
        return super().restore()

    def _check_same_base(self) -> None:
        previous = find_resumable(self.cfg.checkpoint_dir, log=lambda s: None)
        if previous is None:
            return
        saved = load_config(previous / "config.yaml").tune
        if saved.base_fingerprint != self.cfg.tune.base_fingerprint:
            raise UserError(f"{previous} was tuned on {saved.base} (fingerprint "
                            f"{saved.base_fingerprint}), not on {self.cfg.tune.base}: choose "
                            "another logging.run_dir or checkpoint.dir, or set checkpoint.resume=false")

    def build_data(self):
        from hyperclova.data import make_loader
        from hyperclova.tokenizer import load_tokenizer
        from hyperclova.tune.adapters import adapter_tokenizer
        from hyperclova.tune.data import (
            TuneDataset,
            batch_length,
            draw_samples,
            encode_split,
            read_split,
            task_spec,
        )

        cfg, t = self.cfg, self.cfg.tune
        tok = adapter_tokenizer(cfg, load_tokenizer(cfg.data.tokenizer))
        spec = task_spec(cfg)
        raw = read_split(spec, "train", t.train_file)
        if raw is None:
            raise ConfigError(f"tune.train_file: the task {spec.task} names no training file")
        L = cfg.model.seq_len
        train = draw_samples(encode_split(spec, raw, tok, L), t.train_samples, cfg.train.seed)
        splits = [train]
        valid = None
        if t.valid_file and cfg.train.eval_interval > 0:
            valid = encode_split(spec, read_split(spec, "valid", t.valid_file), tok, L)
            splits.append(valid)
        for s in splits:
            self.print(s.summary())
        if not train.items:
            raise UserError(f"{train.path}: no usable training examples")
        multiple = 8 * (cfg.parallel.tp if cfg.parallel.sequence_parallel else 1)
        length = batch_length([s for s in splits if s.items], L, multiple)
        total = cfg.train.steps * cfg.train.global_batch_size
        self.print(f"{len(train.items)} training examples, padded to {length} tokens; "
                   f"{total / len(train.items):.1f} epochs in {cfg.train.steps} steps")
        self.sample_tokens = length
        pad = tok.pad_id
        train_ds = TuneDataset(train.items, length, total, cfg.train.seed, pad)
        loader = make_loader(train_ds, cfg.train.micro_batch_size, self.state.consumed_samples,
                             self.dp_rank, self.dp_size, cfg.data.num_workers)
        valid_ds = None
        if valid is not None and valid.items:
            n = cfg.train.eval_iters * cfg.train.micro_batch_size * self.dp_size
            valid_ds = TuneDataset(valid.items, length, n, cfg.train.seed, pad, shuffle=False)
        return loader, valid_ds


def tune(cfg: Config) -> dict:
    return train(cfg, Tuner)
