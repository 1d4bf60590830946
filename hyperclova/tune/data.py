"""Tuning examples: an evaluation task's examples, encoded as evaluation scores them.

The task (`tune.task`: a built-in evaluation task such as nsmc, ynat, klue_sts, korquad or jsonl,
or a task YAML file, docs/eval.md) supplies the file reader, the prompt template and the
verbalizer. An example becomes `context = description + doc_to_text` (P-tuning's virtual tokens
around the input, hyperclova/tune/adapters.py `tuned_task`) and `target = target_delimiter +
label word` (classification: the verbalizer the evaluation scores) or `+ gold text + end of
document` (generation). A classification task scored the channel way (`scoring: channel`) is
tuned the channel way too (Min et al. 2022's channel prompt tuning): the context is the gold
label word (P-tuning's virtual tokens around it) and the target the text, P(text | label), which
evaluation compares across labels. Context and target are encoded by the evaluation's scorer
(`Scorer.encode_pair`), so a tuned model is trained on exactly the sequences it is evaluated on;
the loss covers the target tokens only.

Bad input is accounted as everywhere else: the task's reader skips and counts unusable records
(for JSONL, the one reader's reasons with file:line), and examples longer than the model's
context are skipped and counted as `too_long`.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch.utils.data import Dataset

from hyperclova.config import Config, ConfigError
from hyperclova.errors import UserError
from hyperclova.parallel.loss import IGNORE

EXAMPLES_PER_REASON = 5


@dataclass
class Encoded:
    ids: list[int]
    split: int  # ids[split:] are the target tokens
    where: str


@dataclass
class Split:
    """One file's examples, encoded, with what was read and skipped."""

    path: str
    items: list[Encoded] = field(default_factory=list)
    read: int = 0
    skipped: Counter = field(default_factory=Counter)
    skip_examples: dict = field(default_factory=dict)

    def skip(self, reason: str, where: str, n: int = 1, examples=None) -> None:
        self.skipped[reason] += n
        shown = self.skip_examples.setdefault(reason, [])
        for w in (examples if examples is not None else [where]):
            if len(shown) < EXAMPLES_PER_REASON:
                shown.append(w)

    def summary(self) -> str:
        s = sum(self.skipped.values())
        line = f"{self.path}: read {self.read} = kept {len(self.items)} + skipped {s}"
        for reason, n in self.skipped.most_common():
            line += f"\n  {reason}: {n} (e.g. {', '.join(self.skip_examples.get(reason, []))})"
        return line


def task_spec(cfg: Config):
    """The task to tune on, as tuning sees it (template override, P-tuning's virtual tokens)."""
    from hyperclova.eval.tasks import builtin_tasks, load_task
    from hyperclova.tune.adapters import tuned_task

    if not cfg.tune.task:
        raise ConfigError(f"tune.task: name the task to tune on: a built-in task "
                          f"({', '.join(builtin_tasks())}) or a task YAML file")
    return tuned_task(load_task(cfg.tune.task), cfg)


def read_split(spec, split: str, path: Optional[str]):
    """The task's examples of `split` (path: the file; default: the task's data_files)."""
    from hyperclova.eval.runner import load_split, template_fields

    if spec.format == "jsonl" and "json_keys" not in spec.options:
        # Input and target fields must be present strings: the one reader counts lines without.
        keys = template_fields(spec.doc_to_text) + template_fields(spec.doc_to_target)
        spec = spec.replace(options={**spec.options, "json_keys": tuple(dict.fromkeys(keys))})
    return load_split(spec, split, path)


def encode_split(spec, examples, tok, seq_len: int) -> Split:
    """Every example as (ids, split); those longer than seq_len + 1 tokens are skipped."""
    from hyperclova.eval.protocol import target_text
    from hyperclova.eval.scorer import Scorer
    from hyperclova.eval.tasks import render

    out = Split(examples.path, read=len(examples.items) + sum(examples.skipped.values()))
    for reason, n in examples.skipped.items():
        out.skip(reason, "", n, examples.skip_examples.get(reason, []))
    scorer = Scorer(None, tok)
    generation = spec.output_type != "multiple_choice"
    channel = not generation and spec.scoring == "channel"
    for ex in examples.items:
        head = render(spec.description, ex.fields, spec, ex.where) if spec.description else ""
        text = render(spec.doc_to_text, ex.fields, spec, ex.where)
        answer = target_text(spec, ex)  # the label word or the gold text
        context, target = (head + answer, text) if channel else (head + text, answer)
        enc = scorer.encode_pair(context, spec.target_delimiter + target)
        ids = enc.ids + ([tok.eod_id] if generation else [])
        if len(ids) - 1 > seq_len:
            out.skip("too_long", ex.where)
            continue
        out.items.append(Encoded(ids, enc.split, ex.where))
    return out


def draw_samples(split: Split, n: Optional[int], seed: int) -> Split:
    """`n` examples drawn with `seed` (tune.train_samples; Table 4's 70 / 2K / 4K)."""
    if n is None or n == len(split.items):
        return split
    if n > len(split.items):
        raise ConfigError(f"tune.train_samples={n}, but {split.path} has only {len(split.items)} "
                          "usable examples")
    chosen = random.Random(f"{seed}:train_samples").sample(range(len(split.items)), n)
    split.items = [split.items[i] for i in sorted(chosen)]
    return split


def batch_length(splits: list[Split], seq_len: int, multiple: int = 8) -> int:
    """One padded length for every batch (pipeline stages expect one activation shape)."""
    longest = max(len(e.ids) - 1 for s in splits for e in s.items)
    return min(-(-longest // multiple) * multiple, seq_len)


def example_tensors(ex: Encoded, length: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Next-token inputs and labels, right-padded; labels only on the target tokens."""
    n = len(ex.ids) - 1
    tokens = torch.full((length,), pad_id, dtype=torch.long)
    labels = torch.full((length,), IGNORE, dtype=torch.long)
    tokens[:n] = torch.tensor(ex.ids[:-1])
    labels[ex.split - 1:n] = torch.tensor(ex.ids[ex.split:])
    return {"tokens": tokens, "labels": labels}


class TuneDataset(Dataset):
    """`total` samples: epoch after epoch over the examples, each epoch in its own seeded order
    (sample i depends on i alone, so a run resumes from its consumed-samples count)."""

    def __init__(self, items: list[Encoded], length: int, total: int, seed: int, pad_id: int,
                 shuffle: bool = True):
        if not items:
            raise UserError("no examples to tune on")
        self.items, self.length, self.total = items, length, total
        self.seed, self.pad_id, self.shuffle = seed, pad_id, shuffle
        self._orders: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return self.total

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._orders = {epoch: torch.randperm(len(self.items), generator=g).tolist()}
        return self._orders[epoch]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        epoch, k = divmod(i, len(self.items))
        j = self._order(epoch)[k] if self.shuffle else k
        return example_tensors(self.items[j], self.length, self.pad_id)
