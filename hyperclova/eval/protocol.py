"""The few-shot protocol of HyperCLOVA's Table 3: seeded demonstrations and prompts that fit.

Demonstrations (`demonstrations:` in the task file):
- `per_run` — run r draws one set of `num_fewshot` training examples with the seed
  "{seed}:{r}", and every test query of that run uses that set in that order (NSMC: 12 sets of 70).
- `same_paragraph` — KorQuAD: up to `num_fewshot` other questions of the query's own paragraph,
  drawn with the seed "{seed}:{r}:{query id}"; the paragraph itself is the task's `description`.

A prompt is `description + demo_1 + delim + ... + demo_k + delim + query`, each demonstration
`doc_to_text + target_delimiter + target` (channel scoring: `target + target_delimiter +
doc_to_text`, and the query comes after each label word in turn). When it does not fit the model's context (with room
for the longest label word, or for `max_gen_toks` new tokens), demonstrations are dropped from the
front, one at a time, until it fits. The query is never truncated: a query that does not fit even
without demonstrations is skipped and counted. Both counts go into the report.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Optional

from hyperclova.errors import UserError
from hyperclova.eval.formats import Example
from hyperclova.eval.tasks import TaskSpec, render


@dataclass
class Prompt:
    context: str  # channel scoring: without the query, which is the scored continuation
    n_demos: int
    dropped: int
    query: str = ""


@dataclass
class ProtocolCounts:
    prompts: int = 0
    prompts_with_dropped_demos: int = 0
    demos_dropped: int = 0
    queries_too_long: int = 0
    short_demo_sets: int = 0  # fewer demonstrations available than num_fewshot
    too_long_examples: list = field(default_factory=list)


def label_word(spec: TaskSpec, ex: Example) -> str:
    return spec.doc_to_choice[gold_label(spec, ex)]


def gold_label(spec: TaskSpec, ex: Example):
    """The example's label as a key of doc_to_choice (rendered targets are strings; keys may be
    ints, as NSMC's 0/1)."""
    raw = render(spec.doc_to_target, ex.fields, spec, ex.where)
    for key in spec.doc_to_choice:
        if str(key) == raw:
            return key
    raise UserError(f"{ex.where}: target {raw!r} is not a label of {spec.source or spec.task} "
                    f"(labels: {list(spec.doc_to_choice)})")


def target_text(spec: TaskSpec, ex: Example) -> str:
    if spec.output_type == "multiple_choice":
        return label_word(spec, ex)
    return render(spec.doc_to_target, ex.fields, spec, ex.where)


def demo_text(spec: TaskSpec, ex: Example) -> str:
    text = render(spec.doc_to_text, ex.fields, spec, ex.where)
    if spec.scoring == "channel":
        return target_text(spec, ex) + spec.target_delimiter + text
    return text + spec.target_delimiter + target_text(spec, ex)


def draw_demonstrations(spec: TaskSpec, run: int, train: list[Example]) -> list[Example]:
    """The run's demonstration set (per_run)."""
    if spec.num_fewshot == 0:
        return []
    if not train:
        raise UserError(f"{spec.task}: {spec.num_fewshot}-shot needs a training file "
                        f"(data_files.train or --train)")
    rng = random.Random(f"{spec.seed}:{run}")
    return rng.sample(train, min(spec.num_fewshot, len(train)))


def paragraph_demonstrations(spec: TaskSpec, run: int, query: Example,
                             by_paragraph: dict[str, list[Example]]) -> list[Example]:
    others = [e for e in by_paragraph.get(query.fields["paragraph"], []) if e is not query]
    rng = random.Random(f"{spec.seed}:{run}:{query.fields.get('id', query.where)}")
    picked = set(id(e) for e in rng.sample(others, min(spec.num_fewshot, len(others))))
    return [e for e in others if id(e) in picked]  # in the paragraph's order


class PromptBuilder:
    """Builds prompts that fit `budget` tokens, dropping demonstrations from the front."""

    def __init__(self, spec: TaskSpec, count_tokens: Callable[[str], int], budget: int):
        self.spec, self.count, self.budget = spec, count_tokens, budget
        self.counts = ProtocolCounts()
        self._demo_cache: dict[int, tuple[str, int]] = {}

    def _demo(self, ex: Example) -> tuple[str, int]:
        key = id(ex)
        if key not in self._demo_cache:
            text = demo_text(self.spec, ex) + self.spec.fewshot_delimiter
            self._demo_cache[key] = (text, self.count(text))
        return self._demo_cache[key]

    def build(self, query: Example, demos: list[Example], reserve: int) -> Optional[Prompt]:
        """`reserve`: tokens the continuation needs after the context."""
        spec = self.spec
        self.counts.prompts += 1
        if len(demos) < spec.num_fewshot:
            self.counts.short_demo_sets += 1
        head = render(spec.description, query.fields, spec, query.where) if spec.description else ""
        q = render(spec.doc_to_text, query.fields, spec, query.where)
        parts = [self._demo(d) for d in demos]
        limit = self.budget - reserve
        # Estimate with per-part counts (cheap), then confirm on the exact encoding.
        fixed = self.count(head + q)
        k, total = 0, fixed + sum(n for _, n in parts)
        while k < len(parts) and total > limit:
            total -= parts[k][1]
            k += 1
        while True:
            context = head + "".join(t for t, _ in parts[k:])
            if self.count(context + q) <= limit:
                break
            if k == len(parts):
                self.counts.queries_too_long += 1
                if len(self.counts.too_long_examples) < 5:
                    self.counts.too_long_examples.append(query.where)
                return None
            k += 1
        if k:
            self.counts.prompts_with_dropped_demos += 1
            self.counts.demos_dropped += k
        if spec.scoring == "channel":
            return Prompt(context, len(parts) - k, k, q)
        return Prompt(context + q, len(parts) - k, k, q)
