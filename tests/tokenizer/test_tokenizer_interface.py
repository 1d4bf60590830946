"""The public Tokenizer interface that the serializer, trainer and generation code against."""
from __future__ import annotations

import json
import multiprocessing as mp

import pytest

from hyperclova.errors import UserError
from hyperclova.tokenizer import Tokenizer, load_tokenizer
from hyperclova.tokenizer.pretokenize import EOD, PAD, special_tokens

from tokenizer_testdata import MIXED, TYPES, VOCAB


@pytest.mark.parametrize("kind", TYPES)
def test_special_tokens_fixed_at_start(toks, kind):
    tok = toks[kind]
    assert tok.eod_id == 0 and tok.pad_id == 1 and tok.unk_id == 2
    assert tok.special_tokens == {s: i for i, s in enumerate(special_tokens())}
    assert {"<|rrn|>", "<|phone|>", "<|email|>", "<|reserved_0|>"} <= set(tok.special_tokens)
    assert tok.vocab_size <= VOCAB + 300 and tok.vocab_size > len(tok.special_tokens) + 256
    assert tok.decode([tok.eod_id]) == EOD and tok.decode([tok.pad_id]) == PAD


@pytest.mark.parametrize("kind", TYPES)
def test_encode_batch_equals_encode_and_ids_in_range(toks, docs, kind):
    tok = toks[kind]
    sample = docs[:50] + MIXED
    batch = tok.encode_batch(sample)
    assert batch == [tok.encode(t) for t in sample]
    assert all(0 <= i < tok.vocab_size for ids in batch for i in ids)
    assert tok.encode("") == [] and tok.encode_batch([]) == []


@pytest.mark.parametrize("kind", TYPES)
def test_special_strings_in_text_stay_text(toks, kind):
    tok = toks[kind]
    text = f"문서 끝 {EOD} 그리고 {PAD}<|rrn|>"
    ids = tok.encode(text)
    never = set(tok.special_tokens.values()) - ({tok.unk_id} if kind == "char-bpe" else set())
    assert not set(ids) & never
    if tok.unk_id not in ids:  # char-bpe maps characters it never saw (here "|") to <|unk|>
        assert tok.decode(ids) == text


@pytest.mark.parametrize("kind", TYPES)
def test_save_load_roundtrip(toks, tmp_path, docs, kind):
    tok = toks[kind]
    tok.save(tmp_path / "copy")
    again = Tokenizer.load(tmp_path / "copy")
    assert again.type == kind and again.vocab_size == tok.vocab_size
    assert again.encode_batch(docs[:30]) == tok.encode_batch(docs[:30])
    meta = json.loads((tmp_path / "copy" / "hyperclova_tokenizer.json").read_text())
    assert meta["pretokenization"] == ("mecab-ko" if kind == "morpheme-bbpe" else "none")


def _encode_in_worker(args):
    tok, texts = args
    return tok.encode_batch(texts)


def test_encode_batch_in_forked_and_spawned_workers(toks, docs):
    # The serializer forks workers that each call encode_batch; pickling must also work (spawn).
    tok = toks["morpheme-bbpe"]
    chunks = [docs[i:i + 20] for i in range(0, 80, 20)]
    expected = [tok.encode_batch(c) for c in chunks]
    for method in ("fork", "spawn"):
        with mp.get_context(method).Pool(2) as pool:
            assert pool.map(_encode_in_worker, [(tok, c) for c in chunks]) == expected


def test_load_errors_name_the_path(tmp_path, tokenizer_dirs):
    with pytest.raises(UserError, match="does not exist"):
        load_tokenizer(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="hyperclova_tokenizer.json"):
        load_tokenizer(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "hyperclova_tokenizer.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_tokenizer(bad)
    meta = json.loads(open(f"{tokenizer_dirs['bbpe']}/hyperclova_tokenizer.json").read())
    (bad / "hyperclova_tokenizer.json").write_text(json.dumps({**meta, "type": "wordpiece"}))
    with pytest.raises(UserError, match="'type'"):
        load_tokenizer(bad)
    (bad / "hyperclova_tokenizer.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="tokenizer.json: missing"):
        load_tokenizer(bad)
    (bad / "tokenizer.json").write_text("{}")
    with pytest.raises(UserError, match="tokenizer.json: not a valid"):
        load_tokenizer(bad)


def test_invalid_unicode_text_is_a_user_error(toks):
    for kind in ("bbpe", "morpheme-bbpe"):
        with pytest.raises(UserError, match="document 1 .*lone surrogate U\\+D800"):
            toks[kind].encode_batch(["좋아요", "bad \ud800 text"])
    for kind in ("bbpe", "morpheme-bbpe", "char-bpe", "spm"):
        with pytest.raises(UserError, match="document 1 of the batch is NoneType"):
            toks[kind].encode_batch(["좋아요", None])
