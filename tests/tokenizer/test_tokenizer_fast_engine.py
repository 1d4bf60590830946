"""The tiktoken bulk engine gives exactly the ids of the HF `tokenizers` reference."""
from __future__ import annotations

import pytest
from hypothesis import given, settings

from hyperclova.tokenizer import load_tokenizer
from hyperclova.tokenizer.train import fast_engine_matches

from tokenizer_testdata import MIXED
from tokenizer_strategies import mixed_text

BYTE_LEVEL = ["morpheme-bbpe", "bbpe"]


@pytest.fixture(scope="module")
def pairs(tokenizer_dirs):
    return {k: (load_tokenizer(tokenizer_dirs[k], engine="hf", segment_cache=False),
                load_tokenizer(tokenizer_dirs[k], engine="tiktoken")) for k in BYTE_LEVEL}


@pytest.mark.parametrize("kind", BYTE_LEVEL)
def test_default_engine_is_the_verified_fast_one(toks, kind):
    assert toks[kind].meta["fast_engine"] is True
    assert toks[kind].engine_name == "TiktokenEngine"


@pytest.mark.parametrize("kind", BYTE_LEVEL)
def test_identical_ids_on_corpus_and_vocab(pairs, docs, kind):
    ref, fast = pairs[kind]
    assert fast.encode_batch(docs) == ref.encode_batch(docs)
    assert fast_engine_matches(ref, docs[:100]) == 0


@pytest.mark.parametrize("kind", BYTE_LEVEL)
def test_identical_ids_on_hard_text(pairs, kind):
    ref, fast = pairs[kind]
    hard = MIXED + ["<|endoftext|> <|pad|>", "a\x1fb \x1f", "\x00\x00x", "ㅋ" * 100, "x" * 5000]
    assert fast.encode_batch(hard) == ref.encode_batch(hard)


@pytest.mark.parametrize("kind", BYTE_LEVEL)
def test_identical_ids_property(pairs, kind):
    ref, fast = pairs[kind]

    @settings(max_examples=200, deadline=None)
    @given(mixed_text)
    def check(text):
        assert fast.encode(text) == ref.encode(text)

    check()


@pytest.mark.parametrize("engine", ["hf", "tiktoken"])
def test_threads_do_not_change_ids(tokenizer_dirs, docs, engine):
    one = load_tokenizer(tokenizer_dirs["bbpe"], engine=engine, threads=1)
    two = load_tokenizer(tokenizer_dirs["bbpe"], engine=engine, threads=2)
    assert one.encode_batch(docs[:200]) == two.encode_batch(docs[:200])
