"""Near-duplicate detection on planted pairs of known Jaccard similarity, across shards."""
from __future__ import annotations

import random

import numpy as np
import pytest

from hyperclova.corpus.dedup import MinHashConfig, MinHasher, exact_hash, find_duplicates, jaccard
from hyperclova.corpus.synthetic import iter_documents


def _shingle_set(text: str, n: int) -> set:
    t = " ".join(text.split())
    return {t[i:i + n] for i in range(max(1, len(t) - n + 1))}


def _variant(rng: random.Random, text: str, donor: list[str], frac: float) -> str:
    words = text.split(" ")
    for i in rng.sample(range(len(words)), k=int(frac * len(words))):
        words[i] = rng.choice(donor)
    return " ".join(words)


@pytest.fixture(scope="module")
def planted():
    rng = random.Random(0)
    docs = [r["text"] for r, _ in iter_documents(3000, seed=11) if r["source"] in ("blog", "news", "kin")]
    bases = docs[:300]
    donor = " ".join(docs[300:600]).split()
    texts, pairs = list(bases), []
    for b in range(len(bases)):  # one variant per base, edited 0-60% of its words
        frac = rng.choice([0.0, 0.02, 0.05, 0.08, 0.12, 0.2, 0.3, 0.45, 0.6])
        texts.append(_variant(rng, bases[b], donor, frac))
        pairs.append((b, len(texts) - 1))
    return texts, pairs


def _run(texts, cfg, tmp_path, n_shards=3):
    hasher = MinHasher(cfg)
    bounds = np.linspace(0, len(texts), n_shards + 1).astype(int)
    hash_files, sig_files = [], []
    for s in range(n_shards):  # shards so that a base and its variant land in different files
        part = texts[bounds[s]:bounds[s + 1]]
        hash_files.append(tmp_path / f"{s}.hash.npy")
        sig_files.append(tmp_path / f"{s}.sig.npy")
        np.save(hash_files[-1], np.array([exact_hash(t) for t in part], dtype=np.uint64))
        np.save(sig_files[-1], np.array([hasher.signature(t) for t in part], dtype=np.uint32))
    verdicts, dup_of, stats = find_duplicates(hash_files, sig_files, cfg)
    return np.concatenate(verdicts), np.concatenate(dup_of), stats


def test_precision_and_recall_at_threshold(planted, tmp_path):
    texts, pairs = planted
    cfg = MinHashConfig(ngram=5, bands=16, rows=8)
    verdict, dup_of, stats = _run(texts, cfg, tmp_path)
    threshold = cfg.effective_threshold
    sets = {}
    sim = lambda i, j: jaccard(sets.setdefault(i, _shingle_set(texts[i], 5)),  # noqa: E731
                               sets.setdefault(j, _shingle_set(texts[j], 5)))
    # Every dropped document against the one it was judged to duplicate.
    predicted = [(int(dup_of[i]), i) for i in np.flatnonzero(verdict > 0)]
    true_sims = [sim(a, b) for a, b in predicted]
    precision = np.mean([s >= threshold for s in true_sims])
    positives = [(a, b) for a, b in pairs if sim(a, b) >= threshold]
    found = {b for _, b in predicted}
    recall = np.mean([b in found for _, b in positives])
    sims = [sim(a, b) for a, b in pairs]
    assert sum(s < threshold - 0.1 for s in sims) > 50 and len(positives) > 100  # both sides planted
    assert precision >= 0.95, (precision, stats)
    assert recall >= 0.9, (recall, stats)
    # Exact copies are reported as exact, the kept one is always the earlier document.
    assert all(a < b for a, b in predicted)
    assert stats["exact_dup"] == sum(texts[a] == texts[b] for a, b in pairs)


def test_keep_rule_is_first_in_input_order_and_shard_independent(planted, tmp_path):
    texts, _ = planted
    cfg = MinHashConfig()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    v1, d1, _ = _run(texts, cfg, tmp_path / "a", n_shards=1)
    v3, d3, _ = _run(texts, cfg, tmp_path / "b", n_shards=4)
    assert np.array_equal(v1, v3) and np.array_equal(d1, d3)


def test_lsh_threshold_and_morpheme_unit():
    assert MinHashConfig(bands=16, rows=8).lsh_threshold == pytest.approx(0.7071, abs=1e-4)
    assert MinHashConfig(bands=20, rows=5).lsh_threshold == pytest.approx(0.5493, abs=1e-4)
    h = MinHasher(MinHashConfig(unit="morpheme", ngram=3))
    a = h.signature("오늘 서울의 낮 최고 기온이 35도까지 올랐습니다. 시민들은 외출을 자제했습니다.")
    b = h.signature("오늘 서울의 낮 최고 기온이 35도까지 올랐습니다. 시민들은 외출을 자제했어요.")
    c = h.signature("새 노트북을 샀는데 속도가 엄청 빨라졌어요. 배터리도 오래가요.")
    assert np.mean(a == b) > 0.5 > np.mean(a == c)
    assert exact_hash("가  나\n다 ") == exact_hash("가 나 다")
