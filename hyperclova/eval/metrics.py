"""Task metrics, computed exactly as the tasks' official scripts do.

- KorQuAD 1.0: the official `evaluate-v1.0.py` (SQuAD v1.1's script adapted for Korean): quote and
  bracket characters become spaces, then lowercase, ASCII punctuation removed, whitespace collapsed
  (no English article removal); F1 over the *characters* of the whitespace-split tokens; the max
  over gold answers; averaged ×100 over all questions (an unanswered one scores 0).
- KLUE-YNAT: macro-F1 ×100 over the labels seen in gold or prediction (scikit-learn's `average="macro"`).
- KLUE-STS: binary F1 ×100 of the positive class (gold: label >= 3.0, set by the reader);
  Pearson r ×100.
- Translation: sacrebleu corpus BLEU, `13a` tokenisation for English targets, `ko-mecab` for Korean.
"""
from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Hashable, Sequence

# --- KorQuAD 1.0 -----------------------------------------------------------------------------------

_KORQUAD_SPACED = re.compile("['\"《》<>〈〉()‘’]")
_ASCII_PUNCT = set(string.punctuation)


def korquad_normalize(s: str) -> str:
    s = _KORQUAD_SPACED.sub(" ", s)
    s = "".join(ch for ch in s.lower() if ch not in _ASCII_PUNCT)
    return " ".join(s.split())


def korquad_exact(prediction: str, gold: str) -> float:
    return float(korquad_normalize(prediction) == korquad_normalize(gold))


def korquad_f1(prediction: str, gold: str) -> float:
    pred = [c for tok in korquad_normalize(prediction).split() for c in tok]
    ref = [c for tok in korquad_normalize(gold).split() for c in tok]
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def korquad_scores(predictions: dict[str, str], golds: dict[str, list[str]]) -> dict[str, float]:
    """{"exact_match", "f1"} ×100 over every question in `golds` (missing predictions score 0)."""
    em = f1 = 0.0
    for qid, answers in golds.items():
        if qid not in predictions:
            continue
        pred = predictions[qid]
        em += max(korquad_exact(pred, a) for a in answers)
        f1 += max(korquad_f1(pred, a) for a in answers)
    n = max(len(golds), 1)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}


# --- classification ------------------------------------------------------------------------------

def accuracy(preds: Sequence[Hashable], golds: Sequence[Hashable]) -> float:
    _same_length(preds, golds)
    return 100.0 * sum(p == g for p, g in zip(preds, golds)) / max(len(golds), 1)


def f1_per_label(preds: Sequence[Hashable], golds: Sequence[Hashable], label: Hashable) -> float:
    tp = sum(p == label and g == label for p, g in zip(preds, golds))
    fp = sum(p == label and g != label for p, g in zip(preds, golds))
    fn = sum(p != label and g == label for p, g in zip(preds, golds))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)  # 0 when undefined, as scikit-learn


def macro_f1(preds: Sequence[Hashable], golds: Sequence[Hashable]) -> float:
    _same_length(preds, golds)
    labels = set(golds) | set(preds)
    if not labels:
        return 0.0
    return 100.0 * sum(f1_per_label(preds, golds, lab) for lab in labels) / len(labels)


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Pearson r ×100 (NaN when either side is constant)."""
    _same_length(xs, ys)
    n = len(xs)
    if n < 2:
        return float("nan")
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return float("nan")
    return 100.0 * sxy / math.sqrt(sxx * syy)


# --- translation ---------------------------------------------------------------------------------

def bleu_tokenizer(target_lang: str) -> str:
    return "ko-mecab" if target_lang == "ko" else "13a"


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str], target_lang: str) -> float:
    import sacrebleu

    _same_length(hypotheses, references)
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)],
                                       tokenize=bleu_tokenizer(target_lang)).score)


def _same_length(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} predictions for {len(b)} references")
