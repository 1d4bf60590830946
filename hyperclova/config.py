"""One typed configuration tree for a run: dataclasses, YAML files and dotted overrides.

    python -m hyperclova.train --config configs/demo.yaml train.lr=3e-4 model=1.3b

Every key is checked against the dataclasses: an unknown key or a value of the wrong type raises
`ConfigError` naming the dotted key, so a typo never silently falls back to a default.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from hyperclova.errors import UserError, read_yaml_mapping
from hyperclova.model.config import ModelConfig
from hyperclova.model.presets import PRESETS, preset_lr

__all__ = ["Config", "ConfigError", "ModelConfig", "load_config", "dump_yaml", "from_dict",
           "to_dict", "validate"]


SDPA_BACKENDS = ("cudnn", "flash", "efficient", "math")


class ConfigError(UserError, ValueError):
    """A user mistake in a config file or override; the message names the key."""


@dataclass
class DataConfig:
    # Corpus mixer: [w1, prefix1, w2, prefix2, ...], [prefix], or [prefix, prefix, ...] (mixed by
    # token count); a prefix is the shard path without .bin/.idx (e.g. data/news_text_document).
    blend: list = field(default_factory=list)
    split: str = "98,2,0"  # train,valid,test proportions (Megatron style)
    tokenizer: Optional[str] = None  # tokenizer directory; checks shard dtype and vocab
    cache_dir: Optional[str] = None  # where GPTDataset keeps its index caches
    num_workers: int = 0  # DataLoader worker processes


@dataclass
class OptimConfig:
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    fused: Optional[bool] = None  # None: fused AdamW where the device supports it


@dataclass
class ScheduleConfig:
    warmup_steps: int = 100
    decay_steps: Optional[int] = None  # None: decay over the whole run (train.steps)
    min_lr_ratio: float = 0.1  # HyperCLOVA: min LR = LR / 10


@dataclass
class TrainConfig:
    steps: int = 1000
    lr: Optional[float] = None  # None: the preset's lr from Table 2
    global_batch_size: int = 8  # sequences per optimizer step, over all data-parallel ranks
    micro_batch_size: int = 8  # sequences per forward/backward on one rank
    seed: int = 1234
    device: str = "auto"  # auto | cpu | cuda
    # auto: bf16 autocast on a GPU that supports bf16, fp32 elsewhere
    dtype: Literal["auto", "fp32", "bf16"] = "auto"
    eval_interval: int = 100  # 0 disables validation
    eval_iters: int = 10
    # A step whose loss or gradient norm is not finite: stop the run, or skip the step (no update).
    on_nonfinite: Literal["stop", "skip"] = "stop"
    max_skipped_steps: int = 100  # with skip: stop once more steps than this were skipped in all
    max_consecutive_skips: int = 10  # with skip: stop once more than this many in a row
    # The output layer and cross-entropy run over chunks of this many tokens, so the (tokens x
    # vocabulary) fp32 logits never exist at once; 0: one chunk per micro-batch.
    loss_chunk_tokens: int = 1024
    # Scaled-dot-product attention kernels in order of preference (cudnn, flash, efficient, math);
    # None: cudnn first on Hopper and newer GPUs, torch's own choice elsewhere.
    sdpa_backends: Optional[list] = None
    float8: bool = False  # float8 linear layers through torchao (pip install -e .[float8]; sm89+)
    threads: Optional[int] = None  # torch intra-op threads on CPU; None leaves torch's default
    exit_after: Optional[int] = None  # save and stop after this many steps in this invocation
    dist_timeout_s: int = 600  # process-group timeout: a hung or dead rank fails the job after this


@dataclass
class CheckpointConfig:
    dir: Optional[str] = None  # None: <logging.run_dir>/checkpoints
    interval: int = 1000  # save every N steps (and always at the end); 0: only at the end
    keep_last: int = 3
    resume: bool = True  # continue from <dir>/latest when it exists
    load: Optional[str] = None  # start from this checkpoint (weights+state) instead
    async_save: bool = False  # write in a background thread; `latest` moves when it has finished
    lock: bool = True  # refuse a second run on this checkpoint directory (docs/checkpoints.md)


@dataclass
class LoggingConfig:
    run_dir: str = "runs/default"
    log_interval: int = 10
    progress_bar: bool = True
    tensorboard: bool = True
    peak_flops: Optional[float] = None  # per-device peak FLOP/s; None: guessed from the GPU name


@dataclass
class ParallelConfig:
    tp: int = 1
    pp: int = 1
    vpp: int = 1  # virtual pipeline stages per pipeline rank
    dp_replicate: int = 1
    dp_shard: int = 1  # FSDP2 sharding degree; 1 means plain DDP over dp_replicate
    sequence_parallel: bool = False
    schedule: str = "1f1b"
    microbatches: Optional[int] = None  # None: the gradient-accumulation count
    # selective: keep matmul and attention outputs, recompute the rest of a block; full: the block
    recompute: Literal["none", "selective", "full"] = "none"
    compile: Optional[bool] = None  # torch.compile each block; None: on for CUDA, off on CPU
    # FSDP2 (dp_shard > 1): 3 gathers a block's weights for its forward and again for backward;
    # 2 keeps them gathered from the first forward of a step to the optimizer step (one all-gather
    # per step, more memory: for models whose bf16 weights fit).
    zero_stage: Literal[2, 3] = 3
    async_tp: bool = False  # overlap TP collectives with matmuls (CUDA, compile, tp > 1)
    debug: bool = False  # TORCH_DISTRIBUTED_DEBUG=DETAIL: check every collective's shape and order


LORA_TARGETS = ("qkv", "proj", "fc1", "fc2")  # the linear layers of a block (hyperclova/tune/lora.py)


@dataclass
class LoraConfig:
    rank: int = 8
    alpha: float = 16.0  # the update is scaled by alpha / rank
    dropout: float = 0.0  # on the adapter's input
    targets: list = field(default_factory=lambda: ["qkv", "proj"])  # any of LORA_TARGETS


@dataclass
class PTuningConfig:
    # Continuous prompt tokens before the input and after it (the answer follows): [3, 3] is
    # P-tuning's "[P]*3 input [P]*3 answer".
    template: list = field(default_factory=lambda: [3, 3])
    encoder: Literal["lstm", "mlp"] = "lstm"  # bidirectional LSTM + MLP, or the MLP alone
    hidden: Optional[int] = None  # the encoder's width; None: model.d_model


@dataclass
class TuneConfig:
    method: Literal["lora", "ptuning", "full"] = "lora"
    # A built-in evaluation task (nsmc, ynat, klue_sts, korquad, jsonl, ...) or a task YAML file
    # (docs/eval.md): its reader, prompt template and verbalizer define the examples.
    task: Optional[str] = None
    train_file: Optional[str] = None  # default: the task's data_files.train
    valid_file: Optional[str] = None  # validation loss every train.eval_interval steps
    train_samples: Optional[int] = None  # tune on this many examples drawn from the training file
    doc_to_text: Optional[str] = None  # replaces the task's input template (Jinja, docs/eval.md)
    base: Optional[str] = None  # the frozen base checkpoint (python -m hyperclova.tune --checkpoint)
    base_fingerprint: Optional[str] = None  # of the base's COMPLETE marker and config; set at start
    # Storage of the frozen base weights: bf16 keeps no fp32 copy; auto: bf16 where the run
    # computes in bf16 (train.dtype), else fp32. Full fine-tuning keeps fp32 master weights.
    base_dtype: Literal["auto", "fp32", "bf16"] = "auto"
    lora: LoraConfig = field(default_factory=LoraConfig)
    ptuning: PTuningConfig = field(default_factory=PTuningConfig)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    @property
    def lr(self) -> float:
        return self.train.lr if self.train.lr is not None else preset_lr(self.model.preset)

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.checkpoint.dir or Path(self.logging.run_dir) / "checkpoints")


# --- building a tree from plain data -----------------------------------------------------------
# The one typed validation of user-written settings: run configs here, corpus recipes
# (hyperclova/corpus/recipe.py) through the same `from_dict`.


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return `value` as type `tp` or raise ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {list(choices)}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:  # YAML 1.1 reads '3e-4' as a string, so accept numeric strings
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    if tp is list or origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    raise ConfigError(f"{key}: unsupported type {tp}")


def _unknown(key: str, name: str, known: list[str]) -> ConfigError:
    near = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    return ConfigError(f"unknown config key '{key}'{hint}; valid keys here: {', '.join(known)}")


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Build dataclass `cls` from plain data (YAML), checking every key and type.

    Fields declared with `field(metadata={"config": False})` (derived state) are not settable.
    """
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init and f.metadata.get("config", True)]
    names = [f.name for f in fields]
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in names:
            raise _unknown(key, str(name), names)
        if cls is Config and name == "model" and isinstance(value, str):
            value = _preset_dict(value, key)
        kwargs[name] = _coerce(value, hints[name], key)
    for f in fields:
        if f.name not in kwargs and f.default is dataclasses.MISSING \
                and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{prefix + '.' if prefix else ''}{f.name}: missing (required)")
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def _preset_dict(name: str, key: str) -> dict:
    if name not in PRESETS:
        raise ConfigError(f"{key}: unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return to_dict(PRESETS[name])


# --- YAML files and dotted overrides -----------------------------------------------------------


def _set_dotted(tree: dict, dotted: str, raw: str) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: '{part}' is not a section")
        node = child
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"{dotted}: cannot read the value {raw!r} ({e.problem})") from None
    if parts == ["model"] and isinstance(value, str):
        tree["model"] = _preset_dict(value, "model")  # `model=1.3b` replaces the whole section
        return
    node[parts[-1]] = value


def _load_yaml(path: str | Path) -> dict:
    try:
        data = read_yaml_mapping(path, "config file")
    except UserError as e:
        raise ConfigError(str(e)) from None
    if isinstance(data.get("model"), str):
        data["model"] = _preset_dict(data["model"], f"{path}: model")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Build the Config from an optional YAML file, then `key=value` overrides applied in order."""
    tree: dict = _load_yaml(path) if path else {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        dotted, raw = item.split("=", 1)
        _set_dotted(tree, dotted.strip(), raw)
    cfg = from_dict(Config, tree)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    m, t = cfg.model, cfg.train
    if m.d_model % m.n_heads:
        raise ConfigError(f"model.d_model={m.d_model} is not divisible by model.n_heads={m.n_heads}")
    for key, val in [("model.n_layers", m.n_layers), ("model.vocab_size", m.vocab_size),
                     ("model.seq_len", m.seq_len), ("train.steps", t.steps),
                     ("train.micro_batch_size", t.micro_batch_size),
                     ("train.global_batch_size", t.global_batch_size)]:
        if val <= 0:
            raise ConfigError(f"{key} must be positive, got {val}")
    if not 0.0 <= m.dropout < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {m.dropout}")
    for key, val in [("train.loss_chunk_tokens", t.loss_chunk_tokens),
                     ("train.max_skipped_steps", t.max_skipped_steps),
                     ("train.max_consecutive_skips", t.max_consecutive_skips)]:
        if val < 0:
            raise ConfigError(f"{key} must be 0 or more, got {val}")
    if t.sdpa_backends is not None:
        bad = [b for b in t.sdpa_backends if b not in SDPA_BACKENDS]
        if bad or not t.sdpa_backends:
            raise ConfigError(f"train.sdpa_backends: {bad or '[]'} not in {list(SDPA_BACKENDS)}")
    if cfg.checkpoint.keep_last < 1:
        raise ConfigError(f"checkpoint.keep_last must be at least 1, got {cfg.checkpoint.keep_last}")
    validate_tune(cfg)


def validate_tune(cfg: Config) -> None:
    t, lora, pt = cfg.tune, cfg.tune.lora, cfg.tune.ptuning
    if lora.rank < 1:
        raise ConfigError(f"tune.lora.rank must be at least 1, got {lora.rank}")
    if lora.alpha <= 0:
        raise ConfigError(f"tune.lora.alpha must be positive, got {lora.alpha}")
    if not 0.0 <= lora.dropout < 1.0:
        raise ConfigError(f"tune.lora.dropout must be in [0, 1), got {lora.dropout}")
    bad = [x for x in lora.targets if x not in LORA_TARGETS]
    if bad or not lora.targets:
        raise ConfigError(f"tune.lora.targets: unknown module(s) {bad or '[]'}; choose from "
                          f"{list(LORA_TARGETS)}")
    if len(set(lora.targets)) != len(lora.targets):
        raise ConfigError(f"tune.lora.targets lists a module twice: {lora.targets}")
    tpl = pt.template
    if len(tpl) != 2 or any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in tpl) \
            or sum(tpl) < 1:
        raise ConfigError(f"tune.ptuning.template must be [prompt tokens before the input, after "
                          f"it], two integers >= 0 with at least one prompt token; got {tpl}")
    if t.method == "ptuning" and sum(tpl) + 2 > cfg.model.seq_len:
        raise ConfigError(f"tune.ptuning.template: {sum(tpl)} prompt tokens leave no room for an "
                          f"input and an answer in model.seq_len={cfg.model.seq_len}")
    if pt.hidden is not None and pt.hidden < 1:
        raise ConfigError(f"tune.ptuning.hidden must be positive, got {pt.hidden}")
    if t.train_samples is not None and t.train_samples < 1:
        raise ConfigError(f"tune.train_samples must be at least 1, got {t.train_samples}")
    if t.method == "full" and t.base_dtype == "bf16":
        raise ConfigError("tune.base_dtype=bf16 needs a frozen base (tune.method=lora or ptuning); "
                          "full fine-tuning keeps fp32 master weights")


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)
