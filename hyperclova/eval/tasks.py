"""The task-definition format: a small YAML file per task, the subset of lm-evaluation-harness's
task YAML that local files need (same key names and meanings), plus the few keys the paper's
protocol adds (`runs`, `demonstrations`, `length_normalization`, `metric`, `format`).

    task: nsmc
    format: nsmc                    # file reader (formats.py): nsmc korquad ynat klue-sts parallel jsonl
    data_files: {train: ratings_train.txt, test: ratings_test.txt}   # relative to this file
    output_type: multiple_choice    # or generate_until
    doc_to_text: "문장: {{document}}\n감정:"
    doc_to_target: "{{label}}"      # multiple_choice: a key of doc_to_choice; else the gold text
    doc_to_choice: {0: 부정, 1: 긍정} # label -> verbalizer; a list means labels 0..n-1
    num_fewshot: 70
    runs: 12                        # demonstration sets, each drawn with its own seed
    metric: accuracy                # accuracy macro_f1 sts korquad bleu

`scoring: channel` turns a multiple-choice task around (the noisy-channel method): each label's
word comes first and the text is scored after it, P(text | label), demonstrations likewise.

Templates are Jinja2 as in lm-eval (`{{field}}`); a field the record lacks is an error naming the
task file. The built-in tasks (hyperclova/eval/tasks/*.yaml) are written in this format.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hyperclova.errors import UserError, read_yaml_mapping

BUILTIN_DIR = Path(__file__).parent / "tasks"
OUTPUT_TYPES = ("multiple_choice", "generate_until")
METRICS = {"multiple_choice": ("accuracy", "macro_f1", "sts"),
           "generate_until": ("korquad", "bleu", "exact_match")}
DEMONSTRATIONS = ("per_run", "same_paragraph")
LENGTH_NORMALIZATION = ("none", "tokens", "chars")
SCORING = ("direct", "channel")


@dataclass
class TaskSpec:
    task: str
    format: str
    output_type: str
    doc_to_text: str
    doc_to_target: str
    metric: str
    data_files: dict[str, str] = field(default_factory=dict)
    doc_to_choice: Optional[dict] = None  # label -> verbalizer word
    description: str = ""  # rendered with the query record, before the demonstrations
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    num_fewshot: int = 0
    runs: int = 1
    demonstrations: str = "per_run"
    length_normalization: str = "none"
    scoring: str = "direct"  # multiple_choice: "direct" P(label | text), or "channel" P(text | label)
    generation_kwargs: dict = field(default_factory=lambda: {"until": ["\n"], "max_gen_toks": 32})
    options: dict = field(default_factory=dict)  # passed to the file reader (direction, labels, ...)
    target_lang: str = "en"  # BLEU tokenisation of the targets (ko: ko-mecab)
    limit: Optional[int] = None
    seed: int = 1234
    source: str = ""  # the YAML file this came from, for messages

    @property
    def until(self) -> list[str]:
        return list(self.generation_kwargs.get("until", []))

    @property
    def max_gen_toks(self) -> int:
        return int(self.generation_kwargs.get("max_gen_toks", 32))

    def replace(self, **changes) -> "TaskSpec":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def builtin_tasks() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def load_task(name_or_path: str) -> TaskSpec:
    """A built-in task by name (`nsmc`, `ynat`, ...) or a task YAML file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        builtin = BUILTIN_DIR / f"{name_or_path.replace('-', '_')}.yaml"
        if not builtin.is_file():
            raise UserError(f"unknown task {name_or_path!r}; built-in tasks: {builtin_tasks()} "
                            f"(or give the path of a task YAML file)")
        path = builtin
    return parse_task(read_yaml_mapping(path, "task file"), path)


def parse_task(data: dict, path: Path) -> TaskSpec:
    data = dict(data)
    known = {f.name for f in dataclasses.fields(TaskSpec)} - {"source"}
    if "dataset_kwargs" in data:  # lm-eval's spelling of the same thing
        data.setdefault("data_files", (data.pop("dataset_kwargs") or {}).get("data_files", {}))
    data.pop("dataset_path", None)
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"{path}: unknown key(s) {unknown}; known keys: {sorted(known)}")
    for key in ("task", "format", "output_type", "doc_to_text", "doc_to_target", "metric"):
        if key not in data:
            raise UserError(f"{path}: missing key {key!r}")
    choice = data.get("doc_to_choice")
    if isinstance(choice, list):
        data["doc_to_choice"] = dict(enumerate(choice))
    elif choice is not None and not isinstance(choice, dict):
        raise UserError(f"{path}: doc_to_choice must be a list or a mapping label -> word")
    files = data.get("data_files") or {}
    if not isinstance(files, dict):
        raise UserError(f"{path}: data_files must map split names (train, test) to paths")
    data["data_files"] = {k: str((path.parent / v)) if not Path(v).is_absolute() else str(v)
                          for k, v in files.items()}
    try:
        spec = TaskSpec(**data, source=str(path))
    except TypeError as e:
        raise UserError(f"{path}: {e}") from None
    validate_task(spec)
    return spec


def validate_task(spec: TaskSpec) -> None:
    where = spec.source or spec.task
    if spec.output_type not in OUTPUT_TYPES:
        raise UserError(f"{where}: output_type must be one of {OUTPUT_TYPES}, got {spec.output_type!r}")
    if spec.metric not in METRICS[spec.output_type]:
        raise UserError(f"{where}: metric {spec.metric!r} does not fit output_type "
                        f"{spec.output_type!r}; use one of {METRICS[spec.output_type]}")
    if spec.output_type == "multiple_choice" and not spec.doc_to_choice:
        raise UserError(f"{where}: multiple_choice needs doc_to_choice (label -> verbalizer)")
    if spec.metric == "sts" and set(spec.doc_to_choice or {}) != {0, 1}:
        raise UserError(f"{where}: metric 'sts' needs doc_to_choice with labels 0 and 1")
    if spec.demonstrations not in DEMONSTRATIONS:
        raise UserError(f"{where}: demonstrations must be one of {DEMONSTRATIONS}")
    if spec.length_normalization not in LENGTH_NORMALIZATION:
        raise UserError(f"{where}: length_normalization must be one of {LENGTH_NORMALIZATION}")
    if spec.scoring not in SCORING:
        raise UserError(f"{where}: scoring must be one of {SCORING}")
    if spec.num_fewshot < 0 or spec.runs < 1:
        raise UserError(f"{where}: num_fewshot must be >= 0 and runs >= 1")


def render(template: str, fields: dict[str, Any], spec: TaskSpec, where: str) -> str:
    import jinja2

    env = _jinja_env()
    try:
        return env.from_string(template).render(**fields)
    except jinja2.UndefinedError as e:
        raise UserError(f"{spec.source or spec.task}: template {template!r} uses a field the record "
                        f"at {where} lacks ({e.message}); its fields: {sorted(fields)}") from None
    except jinja2.TemplateError as e:
        raise UserError(f"{spec.source or spec.task}: bad template {template!r}: {e}") from None


@functools.lru_cache(maxsize=1)
def _jinja_env():
    import jinja2

    return jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              autoescape=False)
