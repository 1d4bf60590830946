"""The embedded synthetic corpus: deterministic, well-formed, varied, clean or noisy on request."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from hyperclova.corpus import noise as nz
from hyperclova.corpus.korean import josa
from hyperclova.corpus.lexicon import TOPICS
from hyperclova.corpus.synthetic import SOURCES, generate_corpus

ROOT = Path(__file__).resolve().parents[2]


def _read(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    path = tmp_path_factory.mktemp("syn") / "clean.jsonl"
    stats = generate_corpus(path, n_docs=3000, seed=7)
    return path, stats, _read(path)


def test_deterministic_for_a_seed(tmp_path, clean):
    path, _, _ = clean
    again = tmp_path / "again.jsonl"
    generate_corpus(again, n_docs=3000, seed=7)
    assert again.read_bytes() == path.read_bytes()
    other = tmp_path / "other.jsonl"
    generate_corpus(other, n_docs=3000, seed=8)
    assert other.read_bytes() != path.read_bytes()


def test_metadata_and_all_styles(clean):
    _, stats, recs = clean
    assert len(recs) == stats["docs"] == 3000
    assert len({r["id"] for r in recs}) == len(recs)
    for r in recs:
        assert r["text"].strip() and r["source"] in SOURCES and r["category"] in TOPICS
        assert ("user_id" in r) == (r["source"] != "news")
    assert set(Counter(r["source"] for r in recs)) == set(SOURCES)
    assert set(Counter(r["category"] for r in recs)) == set(TOPICS)
    assert stats["bytes"] == sum(len(line.encode()) for line in open(clean[0], encoding="utf-8"))


def test_styles_have_their_register(clean):
    _, _, recs = clean
    by = {s: [r["text"] for r in recs if r["source"] == s] for s in SOURCES}
    assert all(t.startswith("[") and "하이퍼뉴스" in t for t in by["news"])
    assert all(t.startswith("질문: ") and "\n답변: " in t for t in by["kin"])
    assert all(t.startswith("별점 ") for t in by["review"])
    assert sum("요." in t for t in by["blog"]) == len(by["blog"])  # polite endings
    assert sum(t.count("다.") for t in by["news"]) > 3 * len(by["news"])  # written -다 style


def test_variety(clean):
    _, _, recs = clean
    texts = [r["text"] for r in recs]
    assert len(set(texts)) / len(texts) > 0.95
    sents = [s for t in texts for s in re.split(r"(?<=[.!?])\s+|\n", t) if s]
    assert len(set(sents)) / len(sents) > 0.15  # many slot combinations, not a handful of lines
    mean_chars = sum(map(len, texts)) / len(texts)
    assert 100 < mean_chars < 600


def test_clean_corpus_has_no_planted_noise(clean):
    _, stats, recs = clean
    assert stats["planted"] == {}
    for r in recs:
        t = r["text"]
        assert "@" not in t and "<p>" not in t and "http" not in t
        assert not re.search(r"010[- .]\d{4}", t)
        assert not re.search(r"(.)\1{5,}", t)


def test_noisy_corpus_plants_every_kind(tmp_path):
    stats = generate_corpus(tmp_path / "noisy.jsonl", n_docs=3000, seed=1, noise=1.0)
    planted = stats["planted"]
    for kind in ["exact_dup", "near_dup", "pii", "spam", "laugh", "junk", "html"]:
        assert planted.get(kind, 0) > 0, kind
    recs = _read(tmp_path / "noisy.jsonl")
    texts = Counter(r["text"] for r in recs)
    assert sum(c - 1 for c in texts.values()) >= planted["exact_dup"]
    assert any(re.search(r"[ㅋㅎㅠ]{8,}", r["text"]) for r in recs)


def test_fake_cards_pass_an_independent_luhn_check():
    # (RRN and business numbers are checked by the PII detector's own validators in
    # test_generated_pii_of_every_type_is_masked; checking them with the generator's functions
    # could not fail.)
    import random
    rng = random.Random(0)
    for _ in range(200):
        card = nz.fake_card(rng).replace("-", "")
        total = sum(int(d) if i % 2 == 0 else (2 * int(d) - 9 if int(d) > 4 else 2 * int(d))
                    for i, d in enumerate(reversed(card)))
        assert total % 10 == 0


@pytest.mark.parametrize("word,particle,expected", [
    ("책", "는", "책은"), ("사과", "은", "사과는"), ("서울", "으로", "서울로"), ("부산", "로", "부산으로"),
    ("기차", "으로", "기차로"), ("3", "이", "3이"), ("2", "이", "2가"), ("1", "으로", "1로"),
    ("영화 '푸른 밤'", "을", "영화 '푸른 밤'을"), ("IT", "와", "IT와"), ("학교", "이에요", "학교예요"),
])
def test_josa(word, particle, expected):
    assert josa(word, particle) == expected


def test_cli(tmp_path):
    out = tmp_path / "c.jsonl"
    cmd = [sys.executable, "tools/generate_corpus.py", "--output", str(out), "--docs", "50", "--seed", "3"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "wrote 50 documents" in res.stdout and len(_read(out)) == 50
    bad = subprocess.run(cmd[:-4] + ["--docs", "-1"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--docs" in bad.stderr and "Traceback" not in bad.stderr
