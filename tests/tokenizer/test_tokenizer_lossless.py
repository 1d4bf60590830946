"""decode(encode(text)) == text byte for byte (docs/tokenizers.md), for any valid UTF-8."""
from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings

from hyperclova.tokenizer import train_tokenizer
from hyperclova.tokenizer.pretokenize import UNK

from tokenizer_testdata import MIXED
from tokenizer_strategies import mixed_text

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("kind", ["morpheme-bbpe", "bbpe", "spm"])
def test_roundtrip_fixed_examples(toks, kind):
    for text in MIXED + ["", " ", "\r\n", "\x00", "\x1f\x1f a\x1fb", "▁▁ ▁"]:
        assert toks[kind].decode(toks[kind].encode(text)) == text


@pytest.mark.parametrize("kind", ["morpheme-bbpe", "bbpe", "spm"])
def test_roundtrip_property(toks, kind):
    tok = toks[kind]

    @SETTINGS
    @given(mixed_text)
    def check(text):
        assert tok.decode(tok.encode(text)) == text

    check()


def test_char_bpe_roundtrip_up_to_counted_unknowns(toks):
    tok = toks["char-bpe"]
    alphabet = {t for t in tok.hf_tokenizer.get_vocab() if len(t) == 1}

    @SETTINGS
    @given(mixed_text)
    def check(text):
        ids = tok.encode(text)
        expected = "".join(c if c in alphabet else UNK for c in text)
        assert tok.decode(ids) == expected
        assert ids.count(tok.unk_id) == sum(c not in alphabet for c in text)

    check()


def test_nfd_is_preserved_by_default(toks):
    nfd = unicodedata.normalize("NFD", "한국어 형태소")
    for kind in ("morpheme-bbpe", "bbpe", "spm"):
        out = toks[kind].decode(toks[kind].encode(nfd))
        assert out == nfd and out != unicodedata.normalize("NFC", nfd)


def test_nfc_option_is_explicit_and_recorded(corpus, tmp_path):
    tok = train_tokenizer([corpus], tmp_path / "nfc", type="bbpe", vocab_size=600,
                          normalization="nfc", show_progress=False, verify_docs=50)
    assert tok.meta["normalization"] == "nfc"
    nfd = unicodedata.normalize("NFD", "한국어 형태소")
    nfc = unicodedata.normalize("NFC", nfd)
    assert tok.encode(nfd) == tok.encode(nfc)
    assert tok.decode(tok.encode(nfd)) == nfc
    # tokenizer.json carries the NFC normaliser too, so HF users see the same ids
    assert tok.hf_tokenizer.encode(nfd).ids == tok.encode(nfc)
