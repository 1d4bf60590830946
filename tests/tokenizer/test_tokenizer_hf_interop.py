"""tokenizer.json loads in `transformers` and encodes identically (docs/tokenizers.md)."""
from __future__ import annotations

import pytest

from hyperclova.errors import UserError
from hyperclova.tokenizer.hf import MorphemeHFTokenizer, to_transformers

from tokenizer_testdata import MIXED


@pytest.mark.parametrize("kind", ["bbpe", "char-bpe"])
def test_pretrained_tokenizer_fast_encodes_identically(toks, tokenizer_dirs, docs, kind):
    hf = to_transformers(tokenizer_dirs[kind])
    texts = docs[:200] + MIXED
    got = hf(texts, add_special_tokens=False)["input_ids"]
    assert got == toks[kind].encode_batch(texts)
    assert hf.eos_token_id == toks[kind].eod_id and hf.pad_token_id == toks[kind].pad_id
    if kind == "bbpe":
        assert [hf.decode(ids) for ids in got] == texts


def test_plain_transformers_load_without_our_code(tokenizer_dirs, toks):
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_file=f"{tokenizer_dirs['bbpe']}/tokenizer.json")
    text = "서울에서 부산까지 KTX로 2시간 30분 걸립니다."
    assert hf.encode(text) == toks["bbpe"].encode(text)


def test_morpheme_wrapper_encodes_identically(toks, tokenizer_dirs, docs):
    wrapper = MorphemeHFTokenizer(tokenizer_dirs["morpheme-bbpe"])
    texts = docs[:200] + MIXED + ["a\x1fb", "", "<|endoftext|>"]
    assert wrapper(texts)["input_ids"] == toks["morpheme-bbpe"].encode_batch(texts)
    assert [wrapper.decode(wrapper.encode(t)) for t in texts] == texts
    assert wrapper.vocab_size == toks["morpheme-bbpe"].vocab_size


def test_spm_has_no_tokenizer_json(tokenizer_dirs):
    with pytest.raises(UserError, match="spm"):
        to_transformers(tokenizer_dirs["spm"])


def test_morpheme_wrapper_normalises_like_the_tokenizer(corpus, docs, tmp_path):
    """A tokenizer trained with NFC normalisation: NFD input must give the same ids both ways."""
    import unicodedata

    from hyperclova.tokenizer import load_tokenizer, train_tokenizer

    out = tmp_path / "nfc"
    train_tokenizer([corpus], str(out), type="morpheme-bbpe", vocab_size=600, normalization="nfc",
                    workers=1, show_progress=False, verify_docs=100)
    texts = [unicodedata.normalize("NFD", t) for t in docs[:100]]
    assert MorphemeHFTokenizer(out)(texts)["input_ids"] == load_tokenizer(out).encode_batch(texts)
