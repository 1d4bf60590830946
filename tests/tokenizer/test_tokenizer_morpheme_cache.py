"""The morpheme cache gives exactly the reference ids (MeCab-ko on every text, then HF BPE), although
MeCab's analysis of an eojeol really does depend on its neighbours."""
from __future__ import annotations

import itertools
import random
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

from hyperclova.tokenizer import load_tokenizer
from hyperclova.tokenizer.morpheme_cache import _EOJEOL, MorphemeCache
from hyperclova.tokenizer.morphemes import CHUNK_CHARS, MorphemeSplitter
from hyperclova.tokenizer.pretokenize import MARKER

from tokenizer_testdata import MIXED
from tokenizer_strategies import mixed_text

# Eojeols MeCab segments differently in these sentences than alone ("목이" alone is the mushroom).
CONTEXT_DEPENDENT = [
    "직관 가서 목이 쉬도록 응원했어요.", "뉴스에서 봤는데 방과 후 코딩 교실 신청자가 늘었대요.",
    "질문: 청바지 사이즈 어떻게 고르나요?", '현장에 있던 시민은 "인천의 제육볶음 전문점 앞에는',
    "이렇게 하면 돼요", "두 명이 왔다", "전문가는 말했다", "나가길 바라요", "관객 '별의 노래'",
]

HARD = MIXED + CONTEXT_DEPENDENT + [
    "서울特別市 東京都 Tōkyō 2024年 ひらがな カタカナ ｶﾀｶﾅ 😀👍🏽 🇰🇷 v2.3.1 3,000원",
    unicodedata.normalize("NFD", "한국어 자모로 풀어 쓴 문장입니다. 학교에서 밥을 먹었다."),
    "  앞에 공백", "뒤에 공백   ", "탭\t으로\t나눈\t단어", "줄\r\n바꿈\r\n", "\x0b수직탭\x0c폼피드 끝",
    "전각\u3000공백과\u00a0NBSP 그리고\u2028줄 구분", "여러    칸   띄어쓰기  ", "\n\n\n빈 줄\n\n",
    "가나다라마바사아자차카타파하" * 30, "a" * 300 + " 끝", "1234567890" * 12,
    "영치기 영차 영치기영차 영치기  영차", "에듀 윌 내셔날 지오그래픽 콜라비 주스 캘리 그라피",
    "ㅋ" * 40 + " 웃겨요 " + "=" * 50, "널\x00문자 가운데", "희귀어 뷁쉛퓱 똠방각하 읅",
    "https://example.com/a?b=1&c=%20 메일은 a.b@example.co.kr",
    "가" * 70 + " 긴 어절 " + "나다" * 40,
]


@pytest.fixture(scope="module")
def ref(tokenizer_dirs):
    return load_tokenizer(tokenizer_dirs["morpheme-bbpe"], engine="hf", segment_cache=False)


@pytest.fixture(scope="module")
def hard_corpus(docs) -> list[str]:
    """Synthetic documents, hard text, the same eojeols shuffled into new contexts, and documents
    longer than a MeCab chunk."""
    rng = random.Random(0)
    words = [w for d in docs[:300] for w in _EOJEOL.findall(d)]
    shuffled = ["".join(rng.sample(words, rng.randint(5, 40))).strip() for _ in range(200)]
    long_docs = [" ".join(docs[i:i + 60]) + "\n" for i in (0, 60)]
    assert all(len(d) > CHUNK_CHARS for d in long_docs)
    return docs[:300] + HARD + shuffled + long_docs


def _cache_for(ref, **kw) -> MorphemeCache:
    mid = ref._marker_id

    def encode_marked(marked: str) -> list[int]:
        return [t for t in ref._engine.encode_batch([marked])[0] if t != mid]

    return MorphemeCache(MorphemeSplitter(), encode_marked, **kw)


def test_context_dependence_is_real(ref):
    # The control: caching each eojeol's analysis on its own would change these segmentations.
    splitter = MorphemeSplitter()
    naive = [MARKER.join(splitter.mark(w) for w in _EOJEOL.findall(t)) for t in CONTEXT_DEPENDENT]
    assert [n != splitter.mark(t) for n, t in zip(naive, CONTEXT_DEPENDENT)] == [True] * 9


@pytest.mark.parametrize("min_count", [1, 2])
def test_cache_ids_equal_the_reference(ref, hard_corpus, min_count):
    expected = ref.encode_batch(hard_corpus)
    cache = _cache_for(ref, min_count=min_count)
    assert cache.available
    cold = [cache.encode(t) for t in hard_corpus]
    warm = [cache.encode(t) for t in hard_corpus]
    assert [i for i, (a, b) in enumerate(zip(cold, expected)) if a != b] == []
    assert [i for i, (a, b) in enumerate(zip(warm, expected)) if a != b] == []
    s = cache.stats
    # every path ran: certified from the cache, MeCab windows, refused eojeols, and (while words
    # are still rare) whole chunks
    assert s.certified > 0.85 * s.eojeols and s.windows > 0 and s.unanalysable > 0
    assert (s.reference_chunks > 0) == (min_count > 1)


def test_tokenizer_uses_the_cache_with_the_fast_engine(tokenizer_dirs, ref, hard_corpus):
    tok = load_tokenizer(tokenizer_dirs["morpheme-bbpe"])  # tiktoken + cache: the serializer's
    assert tok.engine_name == "TiktokenEngine" and tok._cache is not None
    texts = hard_corpus[-(len(HARD) + 100):]
    assert tok.encode_batch(texts) == ref.encode_batch(texts)
    assert tok.segment_cache_stats["certified"] > 0


def test_cache_stays_exact_when_full(ref, hard_corpus):
    cache = _cache_for(ref, max_eojeols=200, min_count=1)  # starts over many times
    texts = hard_corpus[:150]
    assert [cache.encode(t) for t in texts] == ref.encode_batch(texts)
    assert cache.stats.resets > 0


def test_keys_with_spaces_are_read_from_the_dictionary(ref):
    cache = _cache_for(ref)
    assert cache.available
    assert "영치기" in cache._facts.space_key_prefixes  # mecab-ko-dic has "영치기 영차"
    assert MorphemeSplitter().segments("영치기 영차") == ["영치기 영차"]  # one morpheme over a space


@pytest.fixture(scope="module")
def warm_cache(ref) -> MorphemeCache:
    cache = _cache_for(ref, min_count=1)
    for text in HARD:
        cache.encode(text)
    return cache


@settings(max_examples=150, deadline=None)
@given(mixed_text)
def test_cache_matches_reference_property(ref, warm_cache, text):
    text = text.replace(MARKER, "")  # (texts holding the marker take the segment-by-segment path)
    assert warm_cache.encode(text) == ref.encode(text)


def test_a_dictionary_breaking_the_proof_turns_the_cache_off(ref, tmp_path, monkeypatch):
    import shutil

    from hyperclova.tokenizer import eojeol_lattice as lat
    from hyperclova.tokenizer import morpheme_cache as mc

    tagger = MorphemeSplitter()._get_tagger()  # (kept alive: dictionary_info points into it)
    dicdir = Path(tagger.dictionary_info().filename).parent
    assert lat.check_space_category(str(dicdir)) == ""
    shutil.copy(dicdir / "char.bin", tmp_path / "char.bin")
    data = bytearray((tmp_path / "char.bin").read_bytes())
    n_cat = int.from_bytes(data[:4], "little")
    tab = 4 + 32 * n_cat + 4 * ord("\t")
    data[tab:tab + 4] = data[4 + 32 * n_cat + 4 * ord("a"):4 + 32 * n_cat + 4 * ord("a") + 4]
    (tmp_path / "char.bin").write_bytes(bytes(data))  # a tab that MeCab would treat as a letter
    assert "U+0009" in lat.check_space_category(str(tmp_path))

    broken = lat.DictionaryFacts(np.zeros((1, 1), np.int16), np.zeros(1, np.int64), (), "broken")
    monkeypatch.setattr(mc, "dictionary_facts", lambda dicdir: broken)
    cache = _cache_for(ref, min_count=1)
    texts = HARD[:10] * 2
    assert [cache.encode(t) for t in texts] == ref.encode_batch(texts)
    assert not cache.available and cache.stats.analysed == 0


def test_analysis_matches_a_brute_force_over_every_lattice_path(ref):
    """Each eojeol's table (cheapest path and segmentation per first left id and last right id)
    against all paths of its MeCab lattice, enumerated one by one."""
    from hyperclova.tokenizer import eojeol_lattice as lat

    cache = _cache_for(ref)
    assert cache.available
    words = ["학교", " 학교에", " 목이", " 방과", " 어떻게", "먹었다", " 감기", "ㅋㅋ", " 漢字", " abc",
             " 😀", "가나", " 영치기", " 2024년", " 이렇게", " 명이", " 데만", " 주세요"]
    tables = lat.analyse_many(words, cache._parse_all, cache._facts)
    for word, table in zip(words, tables):
        arr, eos = lat.parse_lattice(word, cache._parse_all)
        n_bytes = len(word.encode())
        nodes = {}
        for start, end, rlen, lid, rid, posid, wcost in arr.tolist():
            begin = end - rlen
            penalty = int(cache._facts.penalty_by_posid[posid]) if start != begin else 0
            nodes.setdefault(begin, []).append((end, lid, rid, wcost + penalty))
        best: dict = {}  # (first lid, last rid) -> (cost, {segmentations})

        def walk(pos, first_lid, prev_rid, total, cuts):
            for end, lid, rid, cost in nodes.get(pos, []):
                c = total + cost + (int(cache._facts.matrix[lid, prev_rid]) if prev_rid is not None else 0)
                fl = lid if first_lid is None else first_lid
                if end == n_bytes:
                    key, seg = (fl, rid), cuts + (end,)
                    old = best.get(key)
                    if old is None or c < old[0]:
                        best[key] = (c, {seg})
                    elif c == old[0]:
                        old[1].add(seg)
                else:
                    walk(end, fl, rid, c, cuts + (end,))

        walk(0, None, None, 0, ())
        assert table is not None, word
        got = {}
        for i, lid in enumerate(table.lids.tolist()):
            for j, rid in enumerate(table.rids.tolist()):
                if table.cost[i, j] < lat.REACHABLE:
                    got[(lid, rid)] = (int(table.cost[i, j]), int(table.seg[i, j]))
        assert set(got) == set(best), word
        for key, (cost, segs) in best.items():
            assert got[key][0] == cost, (word, key)
            assert (got[key][1] == -1) == (len(segs) > 1), (word, key)
            if len(segs) == 1:
                pieces = table.segmentations[got[key][1]]
                cuts = tuple(itertools.accumulate(len(p.encode()) for p in pieces))
                assert cuts == next(iter(segs)), (word, key)
        total = min(int(cache._facts.matrix[l, 0]) + c + int(cache._facts.matrix[0, r])
                    for (l, r), (c, _) in best.items())
        assert total == eos, word
