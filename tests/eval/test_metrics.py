"""Metrics against hand-computed values (and sacrebleu's own documented example)."""
from __future__ import annotations

import math

import pytest

from hyperclova.eval import metrics as M


def test_korquad_normalisation_is_the_official_one():
    # quotes/brackets -> spaces, lowercase, ASCII punctuation removed, no article removal
    assert M.korquad_normalize("《파우스트》") == "파우스트"
    assert M.korquad_normalize("  The (Best)  'Film'. ") == "the best film"
    assert M.korquad_normalize("1,000원!") == "1000원"
    assert M.korquad_normalize("「인용」") == "「인용」"  # not in the official list: kept


def test_korquad_em_and_character_f1():
    assert M.korquad_exact("《파우스트》", "파우스트") == 1.0
    # prediction 교향곡을 (4 chars) vs gold 교향곡 (3): 3 shared -> P 3/4, R 1 -> F1 6/7
    assert M.korquad_f1("교향곡을", "교향곡") == pytest.approx(6 / 7)
    # whitespace does not count as a character: "1839 년" vs "1839년" is a perfect F1
    assert M.korquad_f1("1839 년", "1839년") == 1.0 and M.korquad_exact("1839 년", "1839년") == 0.0
    assert M.korquad_f1("", "답") == 0.0
    scores = M.korquad_scores({"a": "교향곡을", "b": "1839년"},
                              {"a": ["교향곡", "교향곡을"], "b": ["1838년"], "c": ["x"]})
    # a: EM 1 (second gold), F1 1; b: EM 0, F1 4/5 (1,8,3,년 of 5 chars each); c unanswered
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 0.8) / 3)


def test_macro_f1_and_accuracy():
    golds = ["정치", "정치", "경제", "사회"]
    preds = ["정치", "경제", "경제", "정치"]
    # 정치: tp1 fp1 fn1 -> 0.5; 경제: tp1 fp1 fn0 -> 2/3; 사회: 0
    assert M.macro_f1(preds, golds) == pytest.approx(100 * (0.5 + 2 / 3 + 0) / 3)
    assert M.accuracy(preds, golds) == 50.0
    # a label only predicted counts too (scikit-learn's union of labels)
    assert M.macro_f1(["a", "b"], ["a", "a"]) == pytest.approx(100 * (2 / 3 + 0) / 2)


def test_binary_f1_and_pearson():
    # positive class 1: tp 1, fp 1, fn 1 -> 2/4
    assert M.f1_per_label([1, 0, 1, 0], [1, 1, 0, 0], 1) == pytest.approx(2 / 4)
    assert M.f1_per_label([0, 0], [0, 0], 1) == 0.0
    assert M.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(100.0)
    assert M.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-100.0)
    assert math.isnan(M.pearson([1, 1, 1], [1, 2, 3]))


def test_bleu_matches_sacrebleu_readme_example():
    refs = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
            ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]]
    sys = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    import sacrebleu

    # sacrebleu's README: 48.53 with both reference streams; ours takes one stream
    assert sacrebleu.corpus_bleu(sys, refs).score == pytest.approx(48.53, abs=0.01)
    assert M.corpus_bleu(sys, refs[0], "en") == pytest.approx(sacrebleu.corpus_bleu(sys, refs[:1]).score)
    ko = M.corpus_bleu(["저는 학생 입니다"], ["저는 학생입니다"], "ko")
    assert ko == pytest.approx(100.0)  # ko-mecab splits both into the same morphemes
    assert M.bleu_tokenizer("ko") == "ko-mecab" and M.bleu_tokenizer("en") == "13a"
