"""build_datasets: megatron-core GPTDataset + blending + split, checked shards, determinism."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from hyperclova.config import DataConfig
from hyperclova.data import build_datasets
from hyperclova.data.dataset import parse_blend, parse_split
from hyperclova.errors import UserError
from data_helpers import random_docs

SEQ = 16


def corpus_pair(shard_factory):
    """Two shards whose token ranges do not overlap, so a sample tells where it came from."""
    return shard_factory("news", random_docs(300, 1, 500, seed=1)), shard_factory("blog", random_docs(300, 500, 999, seed=2))


def test_blend_ratios_and_contents(process_group, shard_factory, tmp_path):
    news, blog = corpus_pair(shard_factory)
    cfg = DataConfig(blend=[0.3, news, 0.7, blog], split="90,10,0", cache_dir=str(tmp_path / "cache"))
    train, valid = build_datasets(cfg, SEQ, seed=7, train_samples=1000, valid_samples=50)
    assert 1000 <= len(train) <= 1002 and 50 <= len(valid) <= 52
    ids = np.array([int(train[i]["dataset_id"]) for i in range(len(train))])
    assert abs((ids == 0).mean() - 0.3) < 0.01
    assert abs((ids[:100] == 0).mean() - 0.3) < 0.02  # mixed throughout, not in runs
    for i in range(0, 1000, 37):
        item = train[i]
        tokens = item["tokens"]
        assert tokens.shape == (SEQ,) and tokens.dtype == torch.int64
        assert torch.equal(item["tokens"][1:], item["labels"][:-1])  # labels are shifted tokens
        in_news = bool(((tokens >= 1) & (tokens < 500)).all())
        in_blog = bool(((tokens >= 500) & (tokens < 999)).all())
        assert in_news if int(item["dataset_id"]) == 0 else in_blog


def test_split_is_disjoint_by_document(process_group, shard_factory, tmp_path):
    # Each document is one distinct repeated token, so a token identifies its document.
    docs = [np.full(10, i + 1) for i in range(200)]
    prefix = shard_factory("uniq", docs, vocab_size=1000)
    cfg = DataConfig(blend=[prefix], split="80,20,0", cache_dir=str(tmp_path / "cache"))
    train, valid = build_datasets(cfg, SEQ, seed=1, train_samples=50, valid_samples=20)
    seen_train = set(torch.cat([train[i]["tokens"] for i in range(len(train))]).tolist())
    seen_valid = set(torch.cat([valid[i]["tokens"] for i in range(len(valid))]).tolist())
    assert seen_train <= set(range(1, 161)) and seen_valid <= set(range(161, 201))
    assert "loss_mask" in train[0] and float(train[0]["loss_mask"].min()) == 1.0


def test_order_is_deterministic_from_seed(process_group, shard_factory, tmp_path):
    news, blog = corpus_pair(shard_factory)

    def first_tokens(seed, cache):
        cfg = DataConfig(blend=[1, news, 2, blog], split="98,2,0", cache_dir=str(tmp_path / cache))
        train, _ = build_datasets(cfg, SEQ, seed=seed, train_samples=64, valid_samples=0)
        return torch.stack([train[i]["tokens"] for i in range(64)])

    a = first_tokens(3, "c1")
    assert torch.equal(a, first_tokens(3, "c2"))  # a fresh cache rebuilds the same order
    assert torch.equal(a, first_tokens(3, "c1"))  # and the cached one loads it
    assert not torch.equal(a, first_tokens(4, "c1"))


def test_valid_none_and_natural_mix(process_group, shard_factory, tmp_path):
    news = shard_factory("news", random_docs(100, 1, 500, seed=1))
    blog = shard_factory("blog", random_docs(300, 500, 999, seed=2))
    cfg = DataConfig(blend=[news, blog], split="100,0,0", cache_dir=str(tmp_path / "cache"))
    train, valid = build_datasets(cfg, SEQ, seed=1, train_samples=400, valid_samples=10)
    assert valid is None and 400 <= len(train) <= 402  # megatron rounds each share up
    ids = np.array([int(train[i]["dataset_id"]) for i in range(400)])
    assert 0.2 < (ids == 0).mean() < 0.3  # bare prefixes mix by token count (about 1:3)


def test_default_cache_dir_is_next_to_first_shard(process_group, shard_factory, tmp_path):
    prefix = shard_factory("one", random_docs(50, 1, 500, seed=1))
    build_datasets(DataConfig(blend=[prefix], split="100,0,0"), SEQ, 1, 10, 0)
    assert os.listdir(tmp_path / "index_cache")


def test_missing_shard_is_named(process_group, shard_factory, tmp_path):
    news = shard_factory("news", random_docs(50, 1, 500, seed=1))
    cfg = DataConfig(blend=[0.5, news, 0.5, str(tmp_path / "gone_text_document")], cache_dir=str(tmp_path / "c"))
    with pytest.raises(UserError, match=r"gone_text_document\.idx does not exist"):
        build_datasets(cfg, SEQ, 1, 10, 0)


@pytest.mark.timeout(30)
def test_split_without_tokens_is_refused(process_group, shard_factory, tmp_path):
    prefix = shard_factory("tiny", random_docs(10, 1, 500, seed=1))
    cfg = DataConfig(blend=[prefix], split="98,2,0", cache_dir=str(tmp_path / "c"))
    with pytest.raises(UserError, match=r"tiny_text_document: .*valid split 0 of its 10 documents"):
        build_datasets(cfg, SEQ, 1, 10, 1)  # megatron-core itself would loop forever here


def test_needs_a_process_group(monkeypatch, shard_factory):
    prefix = shard_factory("one", random_docs(5, 1, 500, seed=1))
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    with pytest.raises(RuntimeError, match="torch.distributed initialised"):
        build_datasets(DataConfig(blend=[prefix]), SEQ, 1, 10, 0)


def test_parse_blend_and_split():
    assert parse_blend(["a"]) == (["a"], None)
    assert parse_blend([0.3, "a.bin", "0.7", "b"]) == (["a", "b"], [0.3, 0.7])
    for bad, msg in [([], "empty"), ([0.3, "a", 0.7], "pairs"), ([0, "a"], r"data.blend\[0\]: weight"),
                     ([1, 2], r"data.blend\[1\]: expected a shard prefix"), (["a", 0.5], "mixes")]:
        with pytest.raises(UserError, match=msg):
            parse_blend(bad)
    assert parse_split("98,2,0") == pytest.approx([0.98, 0.02, 0.0])
    assert parse_split("1") == [1.0, 0.0, 0.0]
    for bad in ["a,b", "0,1,0", "1,2,3,4", "-1,2"]:
        with pytest.raises(UserError, match="data.split"):
            parse_split(bad)


def test_shards_checked_against_the_tokenizer(process_group, corpus_and_tokenizer, shard_factory, tmp_path):
    _, tok_dir = corpus_and_tokenizer  # vocabulary of 600
    too_big = shard_factory("big", [np.array([1, 2, 700])])
    with pytest.raises(UserError, match=r"big_text_document\.bin contains token id 700, outside .* 600"):
        build_datasets(DataConfig(blend=[too_big], split="1", tokenizer=tok_dir), SEQ, 1, 10, 0)
    wide = shard_factory("wide", [np.array([1, 2, 3])], dtype=np.int32)
    with pytest.raises(UserError, match=r"wide_text_document\.bin stores int32 .* needs uint16"):
        build_datasets(DataConfig(blend=[wide], split="1", tokenizer=tok_dir), SEQ, 1, 10, 0)


def test_preprocessed_corpus_trains(process_group, corpus_and_tokenizer, tmp_path):
    from hyperclova.data import make_loader
    from hyperclova.data.serialize import preprocess
    from hyperclova.tokenizer import load_tokenizer

    corpus, tok_dir = corpus_and_tokenizer
    preprocess([corpus], str(tmp_path / "c"), tok_dir, workers=1, append_eod=True, progress=False)
    cfg = DataConfig(blend=[str(tmp_path / "c_text_document")], split="95,5,0", tokenizer=tok_dir)
    train, valid = build_datasets(cfg, 32, seed=1, train_samples=64, valid_samples=8)
    batch = next(make_loader(train, 8, 0, 0, 1))
    assert batch["tokens"].shape == batch["labels"].shape == (8, 32)
    eod = load_tokenizer(tok_dir).eod_id
    assert int((batch["tokens"] == eod).sum()) > 0  # documents are packed across EOD
    assert int(batch["tokens"].max()) < 600 and valid is not None


def test_shards_of_a_replaced_tokenizer_are_refused(process_group, corpus_and_tokenizer, tmp_path):
    """A tokenizer retrained in place (train_tokenizer --overwrite) keeps its vocabulary size, so
    the old shards pass the id checks; the fingerprint in their sidecar tells them apart."""
    import json
    import shutil

    from hyperclova.data.serialize import preprocess
    from hyperclova.tokenizer import load_tokenizer, train_tokenizer
    from hyperclova.tokenizer.load import tokenizer_fingerprint

    corpus, shared_tok = corpus_and_tokenizer
    tok_dir = str(tmp_path / "tok")
    shutil.copytree(shared_tok, tok_dir)
    old = tokenizer_fingerprint(tok_dir)
    preprocess([corpus], str(tmp_path / "c"), tok_dir, workers=1, progress=False)
    shard = str(tmp_path / "c_text_document")
    assert json.loads(open(shard + ".meta.json").read())["tokenizer_fingerprint"] == old
    cfg = DataConfig(blend=[shard], split="1", tokenizer=tok_dir)
    build_datasets(cfg, SEQ, 1, 10, 0)  # the tokenizer it was made with: fine

    train_tokenizer([corpus], tok_dir, type="bbpe", vocab_size=600, show_progress=False, overwrite=True)
    new = tokenizer_fingerprint(tok_dir)
    assert new != old and load_tokenizer(tok_dir).vocab_size == 600  # same size: ids still "fit"
    with pytest.raises(UserError, match=rf"c_text_document\.bin was made with a tokenizer of fingerprint "
                                        rf"{old}, but the tokenizer .*tok has fingerprint {new}"):
        build_datasets(cfg, SEQ, 1, 10, 0)
    os.unlink(shard + ".meta.json")  # a shard from elsewhere records nothing: ids checked only
    build_datasets(cfg, SEQ, 1, 10, 0)


class _PlantsMarker:
    """Unpickling this creates `path`: the proof that a cache file ran code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _train_tokens(cfg):
    train, _ = build_datasets(cfg, SEQ, seed=3, train_samples=40, valid_samples=0)
    return torch.stack([train[i]["tokens"] for i in range(40)])


def test_hostile_index_cache_is_rebuilt_not_run(process_group, shard_factory, tmp_path, caplog):
    import pickle

    news, blog = corpus_pair(shard_factory)
    cfg = DataConfig(blend=[1, news, 2, blog], split="1", cache_dir=str(tmp_path / "cache"))
    expected = _train_tokens(cfg)
    cached = sorted((tmp_path / "cache").rglob("*.npy"))
    assert {p.name.split("-")[-1] for p in cached} >= {"document_index.npy", "sample_index.npy",
                                                        "shuffle_index.npy", "dataset_index.npy"}
    marker = tmp_path / "pwned"
    for path in cached:  # what an attacker with write access to a shared data directory plants
        path.write_bytes(pickle.dumps(_PlantsMarker(marker)))
    caplog.set_level("WARNING", logger="hyperclova.data.dataset")
    assert torch.equal(_train_tokens(cfg), expected)
    assert not marker.exists()
    datasets = {p.name.rsplit("-", 1)[0] for p in cached}  # one warning per cached dataset
    assert sum("not a .npy array file" in r.getMessage() for r in caplog.records) == len(datasets)


@pytest.mark.parametrize("damage", ["truncate", "object_dtype", "float_dtype", "wrong_shape"])
def test_damaged_index_cache_is_rebuilt_with_a_warning(process_group, shard_factory, tmp_path, caplog, damage):
    from hyperclova.data.dataset import index_cache_problem

    prefix = shard_factory("one", random_docs(200, 1, 500, seed=4))
    cfg = DataConfig(blend=[prefix], split="1", cache_dir=str(tmp_path / "cache"))
    expected = _train_tokens(cfg)
    path = next((tmp_path / "cache").rglob("*-sample_index.npy"))
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-7])
    elif damage == "object_dtype":
        np.save(path, np.array([object()] * 4, dtype=object), allow_pickle=True)
    elif damage == "float_dtype":
        np.save(path, np.zeros((5, 2)))
    else:
        np.save(path, np.zeros(10, dtype=np.int64))
    assert index_cache_problem(path) is not None
    caplog.set_level("WARNING", logger="hyperclova.data.dataset")
    assert torch.equal(_train_tokens(cfg), expected)
    assert any("the dataset index will be rebuilt" in r.getMessage() for r in caplog.records)
    assert all(index_cache_problem(p) is None for p in (tmp_path / "cache").rglob("*.npy"))


def test_token_ids_beyond_the_model_vocabulary_without_a_tokenizer(process_group, shard_factory, tmp_path):
    prefix = shard_factory("wide", [np.array([1, 2, 900]), np.array([3, 4, 5])])
    cfg = DataConfig(blend=[prefix], split="1", cache_dir=str(tmp_path / "cache"))  # no data.tokenizer
    with pytest.raises(UserError, match=r"wide_text_document\.bin contains token id 900, outside "
                                        r"model\.vocab_size=512"):
        build_datasets(cfg, 4, 1, 2, 0, model_vocab_size=512)
    os.remove(prefix + ".meta.json")  # a shard from elsewhere: the .bin is scanned instead
    with pytest.raises(UserError, match="token id 900"):
        build_datasets(cfg, 4, 1, 2, 0, model_vocab_size=512)
