"""MeCab-ko segmentation and the morpheme walls it puts into BPE (docs/tokenizers.md)."""
from __future__ import annotations

import resource
import time

from hypothesis import given, settings

from hyperclova.tokenizer.morphemes import MorphemeSplitter, boundaries

from tokenizer_testdata import MIXED
from tokenizer_strategies import mixed_text


def test_segments_are_morphemes_with_leading_whitespace():
    seg = MorphemeSplitter().segments("저는 학생입니다.\n다음 줄  ")
    assert seg == ["저", "는", " 학생", "입니다", ".", "\n다음", " 줄  "]
    assert boundaries(seg) == [1, 5, 8]  # 저|는, 학생|입니다, 입니다|.


@settings(max_examples=200, deadline=None)
@given(mixed_text)
def test_segments_always_concatenate_to_the_input(text):
    splitter = MorphemeSplitter()
    assert "".join(splitter.segments(text)) == text
    assert splitter.unaligned_chunks == 0


def test_no_token_crosses_a_morpheme_boundary(toks, docs):
    tok = toks["morpheme-bbpe"]
    crossing = 0
    for text in docs[:300] + MIXED:
        cuts = set()
        pos = 0
        for seg in tok.segments(text):
            pos += len(seg.encode())
            cuts.add(pos)
        pos = 0
        for i in tok.encode(text):
            start, pos = pos, pos + len(tok.id_to_bytes(i))
            crossing += any(start < c < pos for c in cuts)
    assert crossing == 0


def test_plain_bbpe_does_cross_boundaries(toks, docs):
    # The control for the test above: without the walls, stems and particles merge.
    tok = toks["bbpe"]
    splitter = MorphemeSplitter()
    crossing = 0
    for text in docs[:100]:
        cuts = {len(text[:c].encode()) for c in boundaries(splitter.segments(text))}
        pos = 0
        for i in tok.encode(text):
            start, pos = pos, pos + len(tok.id_to_bytes(i))
            crossing += any(start < c < pos for c in cuts)
    assert crossing > 0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_pathological_lines_finish_in_bounded_time_and_memory(toks):
    cases = {
        "bbpe": ["abcdefghij" * 1_000_000, "x" * 10_000_000],  # 10 MB without a space
        "morpheme-bbpe": ["x" * 2_000_000, "ㅋ" * 1_000_000, "가나다라마" * 10_000, "abc" * 100_000],
    }
    for kind, texts in cases.items():
        tok = toks[kind]
        for text in texts:
            before = _peak_mb()
            start = time.perf_counter()
            ids = tok.encode(text)
            elapsed = time.perf_counter() - start
            assert tok.decode(ids) == text
            # generous bounds (shared 2-core CI): the unbounded versions take minutes and GBs
            assert elapsed < 30, (kind, text[:10], elapsed)
            assert _peak_mb() - before < 1500, (kind, text[:10])
