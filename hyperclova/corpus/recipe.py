"""Cleaning recipes: a YAML list of steps, in order, with their thresholds.

    task_mb: 32
    steps:
      - normalize: {strip_html: true, max_char_repeat: 4}
      - pii: {salt_env: HYPERCLOVA_PII_SALT}
      - length: {min_chars: 30}
      - exact_dedup: {}
      - near_dedup: {unit: char, ngram: 5, bands: 16, rows: 8}

Per-document steps before the dedup steps run in the parallel first pass; the dedup steps (which
must be adjacent) run globally; per-document steps after them run in the parallel final pass.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hyperclova.config import ConfigError, from_dict
from hyperclova.corpus.clean import NormalizeConfig, normalize
from hyperclova.corpus.dedup import MinHashConfig
from hyperclova.corpus.filters import FILTERS
from hyperclova.corpus.pii import PiiConfig, deidentify
from hyperclova.errors import UserError, read_yaml_mapping
from hyperclova.paths import CONFIG_DIR

DEFAULT_RECIPE = CONFIG_DIR / "corpus" / "korean_default.yaml"  # shipped as package data too


class Step:
    """One per-document step: returns (record, None) to keep or (record, (reason, detail)) to drop."""

    name: str
    action: str = "drop"

    def __call__(self, rec: dict, pii_counts: Counter):
        raise NotImplementedError


class NormalizeStep(Step):
    def __init__(self, cfg: NormalizeConfig):
        self.name, self.cfg = "normalize", cfg

    def __call__(self, rec, pii_counts):
        return {**rec, "text": normalize(rec["text"], self.cfg)}, None


class PiiStep(Step):
    def __init__(self, cfg: PiiConfig):
        self.name, self.cfg = "pii", cfg

    def __call__(self, rec, pii_counts):
        return deidentify(rec, self.cfg, pii_counts), None


class FilterStep(Step):
    def __init__(self, name: str, flt):
        self.name, self.flt, self.action = name, flt, flt.action

    def __call__(self, rec, pii_counts):
        return rec, self.flt(rec["text"])


@dataclass
class Recipe:
    before: list[Step] = field(default_factory=list)
    exact_dedup: bool = False
    near_dedup: MinHashConfig | None = None
    after: list[Step] = field(default_factory=list)
    task_mb: float = 32.0
    fingerprint: str = ""  # hash of the recipe's content: a resumed run must use the same recipe

    @property
    def step_names(self) -> list[str]:
        dedup = (["exact_dedup"] if self.exact_dedup else []) + (["near_dedup"] if self.near_dedup else [])
        return [s.name for s in self.before] + dedup + [s.name for s in self.after]


@dataclass
class _RecipeFile:
    steps: list
    task_mb: float = 32.0


@dataclass
class _NoParameters:
    pass


# Every step's parameters are a dataclass, checked (keys, types, choices) by the same
# `hyperclova.config.from_dict` that checks run configs.
STEP_PARAMETERS = {"normalize": NormalizeConfig, "pii": PiiConfig, **FILTERS,
                   "exact_dedup": _NoParameters, "near_dedup": MinHashConfig}


def _build(name: str, params: dict, where: str) -> Step:
    if name == "pii":
        params = dict(params)
        env = params.pop("salt_env", None)
        cfg = from_dict(PiiConfig, params, prefix=where)
        if env and os.environ.get(str(env)):  # a secret salt from the environment beats the recipe's
            cfg.salt = os.environ[str(env)]
        if not cfg.salt:
            raise UserError(f"{where}: pii needs a salt for user id hashes: set 'salt:' or export "
                            f"${env or 'a variable named by salt_env'}")
        return PiiStep(cfg)
    cfg = from_dict(STEP_PARAMETERS[name], params, prefix=where)
    return NormalizeStep(cfg) if name == "normalize" else FilterStep(name, cfg)


def load_recipe(path: str | Path | None = None) -> Recipe:
    path = Path(path) if path else DEFAULT_RECIPE
    raw = read_yaml_mapping(path, "recipe")
    try:
        spec = from_dict(_RecipeFile, raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    recipe = Recipe(task_mb=spec.task_mb)
    recipe.fingerprint = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]
    phase = "before"
    for i, item in enumerate(spec.steps):
        where = f"{path}: steps[{i}]"
        if isinstance(item, str):
            item = {item: {}}
        if not isinstance(item, dict) or len(item) != 1:
            raise UserError(f"{where}: each step is one 'name: {{params}}' mapping")
        (name, params), = item.items()
        params = params or {}
        if not isinstance(params, dict):
            raise UserError(f"{where}: parameters of '{name}' must be a mapping")
        if name not in STEP_PARAMETERS:
            raise UserError(f"{where}: unknown step '{name}'; known: {', '.join(STEP_PARAMETERS)}")
        where = f"{where}.{name}"
        if name in ("exact_dedup", "near_dedup"):
            if phase == "after":
                raise UserError(f"{where}: exact_dedup and near_dedup must be adjacent steps")
            phase = "dedup"
            cfg = from_dict(STEP_PARAMETERS[name], params, prefix=where)
            if name == "exact_dedup":
                recipe.exact_dedup = True
            else:
                recipe.near_dedup = cfg
            continue
        if phase == "dedup":
            phase = "after"
        getattr(recipe, phase).append(_build(name, params, where))
    return recipe
