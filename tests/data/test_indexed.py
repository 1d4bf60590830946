"""Shards: round trip through megatron-core's IndexedDataset, atomic writes, checks, merging."""
from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
from megatron.core.datasets.indexed_dataset import IndexedDataset

from hyperclova.data.indexed import (ShardWriter, check_shard, dtype_for_vocab, merge_shards, meta_path,
                                     shard_prefix)
from hyperclova.errors import UserError
from data_helpers import random_docs, write_shard


@pytest.mark.parametrize("dtype,high", [(np.uint16, 65499), (np.int32, 200_000)])
def test_round_trip_through_megatron_indexed_dataset(tmp_path, dtype, high):
    docs = random_docs(50, 0, high, seed=1)
    docs[3] = np.array([high - 1, 0, high - 1])  # extremes survive the dtype
    prefix = write_shard(str(tmp_path / "s"), docs, dtype)
    ds = IndexedDataset(prefix)
    assert ds.index.dtype is dtype
    assert len(ds) == len(docs)
    assert list(ds.document_indices) == list(range(len(docs) + 1))
    for got, want in zip(ds, docs):
        np.testing.assert_array_equal(got, want)
    info = check_shard(prefix)
    assert (info.documents, info.tokens) == (50, sum(map(len, docs)))
    assert info.max_token_id == max(int(d.max()) for d in docs)


def test_dtype_rule_and_names():
    assert dtype_for_vocab(65499) is np.uint16
    assert dtype_for_vocab(65500) is np.int32
    assert shard_prefix("out/news", "text") == "out/news_text_document"


def test_final_names_appear_only_on_commit(tmp_path):
    prefix = str(tmp_path / "s")
    writer = ShardWriter(prefix, np.uint16)
    writer.add_documents(np.arange(10, dtype=np.uint16), np.array([4, 6], dtype=np.int32))
    assert not any(os.path.exists(prefix + s) for s in (".bin", ".idx", ".meta.json"))
    writer.abort()
    assert os.listdir(tmp_path) == []


def test_commit_replaces_an_existing_shard(tmp_path):
    prefix = write_shard(str(tmp_path / "s"), random_docs(5, 0, 100, seed=0))
    new = random_docs(9, 100, 200, seed=1)
    write_shard(prefix, new)
    ds = IndexedDataset(prefix)
    assert len(ds) == 9 and all(np.array_equal(a, b) for a, b in zip(ds, new))
    assert sorted(os.listdir(tmp_path)) == ["s.bin", "s.idx", "s.meta.json"]


def test_missing_files_are_named(tmp_path):
    prefix = write_shard(str(tmp_path / "s"), random_docs(5, 0, 100, seed=0))
    os.unlink(prefix + ".idx")
    with pytest.raises(UserError, match=r"s\.idx does not exist"):
        check_shard(prefix)
    with pytest.raises(UserError, match=r"nothing\.bin does not exist|nothing\.idx does not exist"):
        check_shard(str(tmp_path / "nothing"))


def test_empty_shard_is_refused(tmp_path):
    writer = ShardWriter(str(tmp_path / "e"), np.uint16)
    writer.commit()
    with pytest.raises(UserError, match=r"e\.bin holds no tokens"):
        check_shard(str(tmp_path / "e"))


def test_truncated_bin_and_bad_header_are_named(tmp_path):
    prefix = write_shard(str(tmp_path / "s"), random_docs(5, 0, 100, seed=0))
    with open(prefix + ".bin", "r+b") as f:
        f.truncate(os.path.getsize(prefix + ".bin") - 2)
    with pytest.raises(UserError, match=r"s\.bin has .* bytes"):
        check_shard(prefix)
    other = str(tmp_path / "t")
    with open(other + ".idx", "wb") as f:
        f.write(b"not an index at all, really not" * 3)
    open(other + ".bin", "wb").close()
    with pytest.raises(UserError, match=r"t\.idx: not a Megatron"):
        check_shard(other)
    with open(other + ".idx", "wb") as f:
        f.write(b"MMIDIDX\x00\x00" + struct.pack("<QBQQ", 1, 5, 0, 1) + struct.pack("<q", 0))
    with pytest.raises(UserError, match=r"dtype code 5"):
        check_shard(other)


@pytest.mark.parametrize("sidecar", [True, False])
def test_vocab_and_dtype_mismatch(tmp_path, sidecar):
    prefix = write_shard(str(tmp_path / "s"), [np.array([1, 2, 999]), np.array([5])])
    if not sidecar:
        os.unlink(meta_path(prefix))  # a shard made elsewhere: the .bin is scanned instead
    assert check_shard(prefix, vocab_size=1000).max_token_id == 999
    with pytest.raises(UserError, match=r"s\.bin contains token id 999, outside .* 999"):
        check_shard(prefix, vocab_size=999)
    with pytest.raises(UserError, match=r"s\.bin stores uint16 .* 70000 needs int32"):
        check_shard(prefix, vocab_size=70000)


def test_stale_sidecar_is_not_trusted(tmp_path):
    prefix = write_shard(str(tmp_path / "s"), [np.array([1, 2, 3])])
    write_shard(str(tmp_path / "big"), [np.array([1, 2, 3, 4000])])
    for suffix in (".bin", ".idx"):  # replace the pair behind the sidecar's back
        os.replace(str(tmp_path / "big") + suffix, prefix + suffix)
    with pytest.raises(UserError, match="token id 4000"):
        check_shard(prefix, vocab_size=1000)


def test_merge_concatenates(tmp_path):
    a = random_docs(11, 0, 500, seed=1)
    b = random_docs(7, 500, 900, seed=2)
    pa = write_shard(str(tmp_path / "a"), a, vocab_size=1000)
    pb = write_shard(str(tmp_path / "b"), b, vocab_size=1000)
    meta = merge_shards([pa, pb], str(tmp_path / "m"))
    ds = IndexedDataset(str(tmp_path / "m"))
    assert len(ds) == 18 and meta.documents == 18 and meta.vocab_size == 1000
    for got, want in zip(ds, a + b):
        np.testing.assert_array_equal(got, want)
    assert json.load(open(meta_path(str(tmp_path / "m"))))["max_token_id"] == max(int(d.max()) for d in a + b)


def test_merge_refuses_mixed_dtypes(tmp_path):
    pa = write_shard(str(tmp_path / "a"), random_docs(3, 0, 50, seed=1), np.uint16)
    pb = write_shard(str(tmp_path / "b"), random_docs(3, 0, 50, seed=1), np.int32)
    with pytest.raises(UserError, match=r"different token dtypes: .*a \(uint16\), .*b \(int32\)"):
        merge_shards([pa, pb], str(tmp_path / "m"))
    assert not os.path.exists(str(tmp_path / "m.idx"))


def test_merge_keeps_one_tokenizer_fingerprint_and_refuses_two(tmp_path):
    docs = random_docs(3, 0, 50, seed=1)
    pa = write_shard(str(tmp_path / "a"), docs, tokenizer_fingerprint="aaaa")
    pb = write_shard(str(tmp_path / "b"), docs, tokenizer_fingerprint="aaaa")
    assert merge_shards([pa, pb], str(tmp_path / "m")).tokenizer_fingerprint == "aaaa"
    assert check_shard(str(tmp_path / "m")).tokenizer_fingerprint == "aaaa"
    pc = write_shard(str(tmp_path / "c"), docs)  # unknown: the merge cannot vouch for one
    assert merge_shards([pa, pc], str(tmp_path / "m2")).tokenizer_fingerprint is None
    pd = write_shard(str(tmp_path / "d"), docs, tokenizer_fingerprint="dddd")
    with pytest.raises(UserError, match=r"different tokenizers \(fingerprints\): .*a \(aaaa\), .*d \(dddd\)"):
        merge_shards([pa, pd], str(tmp_path / "m3"))


def test_merge_cli(tmp_path, capsys):
    """--output-prefix and input prefixes mean {prefix}_{key}_document, as for preprocess_data."""
    from tools.merge_datasets import main

    parts = tmp_path / "parts"
    parts.mkdir()
    write_shard(str(parts / "p1_text_document"), random_docs(4, 0, 50, seed=1))
    write_shard(str(parts / "p0_text_document"), random_docs(3, 0, 50, seed=2))
    write_shard(str(parts / "p0_title_document"), random_docs(3, 0, 50, seed=3))  # another key: not merged
    main(["--input", str(parts), "--output-prefix", str(tmp_path / "all")])
    assert "merged 2 shards" in capsys.readouterr().out
    ds, first = IndexedDataset(str(tmp_path / "all_text_document")), IndexedDataset(str(parts / "p0_text_document"))
    assert len(ds) == 7
    np.testing.assert_array_equal(ds[0], first[0])  # directories merge in name order
    main(["--input", str(parts / "p1"), str(parts / "p0_text_document.idx"), "--output-prefix", str(tmp_path / "b")])
    assert len(IndexedDataset(str(tmp_path / "b_text_document"))) == 7
    for argv, message in [
        (["--input", str(tmp_path / "missing"), "--output-prefix", str(tmp_path / "x")],
         "missing_text_document.idx does not exist"),
        (["--input", str(parts), "--output-prefix", str(tmp_path / "all")], "already exist; pass --overwrite"),
        (["--input", str(parts), "--output-prefix", str(tmp_path / "y_text_document")], "names a shard"),
    ]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_bytes_identical_to_megatron_builder_without_importing_it(tmp_path, dtype):
    """Our writer produces megatron-core's exact bytes, for documents and for whole-shard appends,
    and the serializer's writer module does not import megatron-core (or torch)."""
    import subprocess
    import sys

    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    a, b = random_docs(37, 0, 60000, seed=3), random_docs(5, 0, 60000, seed=4)
    ours = write_shard(str(tmp_path / "ours"), a, dtype)
    ref = IndexedDatasetBuilder(str(tmp_path / "ref.bin"), dtype=dtype)
    for doc in a:
        ref.add_document(torch.from_numpy(doc.astype(np.int64)), [len(doc)])
    ref.finalize(str(tmp_path / "ref.idx"))
    for suffix in (".bin", ".idx"):
        assert open(ours + suffix, "rb").read() == open(str(tmp_path / "ref") + suffix, "rb").read()

    pb = write_shard(str(tmp_path / "b"), b, dtype)
    merged = ShardWriter(str(tmp_path / "merged"), dtype)
    merged.add_shard(check_shard(pb))
    merged.add_shard(check_shard(ours))
    merged.commit()
    ref = IndexedDatasetBuilder(str(tmp_path / "refm.bin"), dtype=dtype)
    ref.add_index(pb)
    ref.add_index(ours)
    ref.finalize(str(tmp_path / "refm.idx"))
    for suffix in (".bin", ".idx"):
        assert open(str(tmp_path / "merged") + suffix, "rb").read() == open(str(tmp_path / "refm") + suffix, "rb").read()

    code = "import sys, hyperclova.data.serialize; print(sorted({'torch', 'megatron'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_stale_temporaries_are_those_of_dead_local_processes(tmp_path):
    import socket

    prefix = str(tmp_path / "s")
    live = ShardWriter(prefix, np.uint16)  # this process: alive
    dead = [f"{prefix}.tmp-{socket.gethostname()}-999999999{s}" for s in (".bin", ".idx")]
    other_host = f"{prefix}.tmp-elsewhere.example-1.bin"
    for p in dead + [other_host]:
        open(p, "wb").close()
    from hyperclova.data.indexed import stale_temporaries

    assert sorted(stale_temporaries(prefix)) == sorted(dead)
    live.abort()
