"""The serializer: ids equal the tokenizer's, bad input is counted by reason, output is atomic."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from megatron.core.datasets.indexed_dataset import IndexedDataset

from hyperclova.data.serialize import preprocess
from hyperclova.errors import UserError
from hyperclova.tokenizer import load_tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def texts_of(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def read_shard(prefix: str) -> list[list[int]]:
    ds = IndexedDataset(prefix)
    return [ds[i].tolist() for i in range(len(ds))]


@pytest.mark.parametrize("workers,block_bytes", [(2, 1 << 20), (3, 3000)])
def test_ids_round_trip_in_order(corpus_and_tokenizer, tmp_path, workers, block_bytes):
    corpus, tok_dir = corpus_and_tokenizer
    tok = load_tokenizer(tok_dir)
    stats = preprocess([corpus], str(tmp_path / "out"), tok_dir, workers=workers, append_eod=True,
                       block_bytes=block_bytes, progress=False)
    texts = texts_of(corpus)
    want = [ids + [tok.eod_id] for ids in tok.encode_batch(texts)]
    prefix = str(tmp_path / "out_text_document")
    assert IndexedDataset(prefix).index.dtype is np.uint16  # vocab 600 < 65,500
    assert read_shard(prefix) == want
    assert (stats.documents_read, stats.documents_written, stats.documents_skipped) == (300, 300, 0)
    assert stats.tokens["text"] == sum(map(len, want))
    assert stats.bytes_read == os.path.getsize(corpus)
    assert sorted(os.listdir(tmp_path)) == sorted(f"out_text_document{s}" for s in (".bin", ".idx", ".meta.json"))


BAD_LINES = [
    (b'{"text": 5}', "non_string"),
    (b'{"title": "x"}', "missing_key"),
    (b"not json", "invalid_json"),
    (b'{"text": "caf\xc3"}', "invalid_utf8"),
    (b'{"text": ""}', "empty_text"),
    (b'{"text": "  \\n "}', "empty_text"),
    (b"[1, 2]", "not_an_object"),
    (b'{"text": "\\ud800 lone"}', "invalid_unicode"),
    (b"", "empty_text"),
]


def write_mixed(path, good: list[str]) -> dict[int, str]:
    """Good documents with every kind of bad line between them; returns line -> expected reason."""
    expected, lines = {}, []
    for i, text in enumerate(good):
        lines.append(json.dumps({"text": text, "id": i}, ensure_ascii=False).encode())
        if i < len(BAD_LINES):
            lines.append(BAD_LINES[i][0])
            expected[len(lines)] = BAD_LINES[i][1]
    lines[0] = b"\xef\xbb\xbf" + lines[0]  # a byte-order mark is tolerated
    lines[1] += b"\r"  # so is a CRLF line end
    with open(path, "wb") as f:
        f.write(b"\n".join(lines))  # and a missing final newline
    return expected


def test_bad_input_is_skipped_and_counted(corpus_and_tokenizer, tmp_path):
    corpus, tok_dir = corpus_and_tokenizer
    good = texts_of(corpus)[:40]
    expected = write_mixed(tmp_path / "mixed.jsonl", good)
    stats = preprocess([str(tmp_path / "mixed.jsonl")], str(tmp_path / "out"), tok_dir, workers=2,
                       block_bytes=2000, progress=False)
    assert stats.documents_read == 40 + len(BAD_LINES)
    assert stats.documents_written == 40
    assert stats.documents_read == stats.documents_written + stats.documents_skipped
    want_counts: dict[str, int] = {}
    for reason in expected.values():
        want_counts[reason] = want_counts.get(reason, 0) + 1
    assert stats.skipped == want_counts
    located = {int(where.split(":")[1]): reason for reason, ex in stats.examples.items() for where in ex}
    assert located == expected
    assert read_shard(str(tmp_path / "out_text_document")) == load_tokenizer(tok_dir).encode_batch(good)
    summary = stats.summary()
    assert f"documents read {40 + len(BAD_LINES)} = written 40 + skipped {len(BAD_LINES)}" in summary
    assert f"mixed.jsonl:{min(k for k, v in expected.items() if v == 'invalid_json')}" in summary


def test_strict_stops_at_first_bad_line_and_keeps_old_output(corpus_and_tokenizer, tmp_path):
    corpus, tok_dir = corpus_and_tokenizer
    preprocess([corpus], str(tmp_path / "out"), tok_dir, workers=1, progress=False)
    before = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)}
    expected = write_mixed(tmp_path / "mixed.jsonl", texts_of(corpus)[:40])
    first = min(expected)
    with pytest.raises(UserError, match=rf"mixed\.jsonl:{first}: value is not a string"):
        preprocess([str(tmp_path / "mixed.jsonl")], str(tmp_path / "out"), tok_dir, workers=2,
                   strict=True, block_bytes=500, progress=False)
    after = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path) if n != "mixed.jsonl"}
    assert after == before  # no temporary files left, the complete old shard untouched


def test_plain_text_and_several_keys(corpus_and_tokenizer, tmp_path):
    corpus, tok_dir = corpus_and_tokenizer
    tok = load_tokenizer(tok_dir)
    lines = [t.replace("\n", " ") for t in texts_of(corpus)[:20]]
    (tmp_path / "docs.txt").write_text("\n".join(lines[:10]) + "\n\n" + "\n".join(lines[10:]) + "\n", encoding="utf-8")
    stats = preprocess([str(tmp_path / "docs.txt")], str(tmp_path / "txt"), tok_dir, progress=False)
    assert (stats.documents_written, stats.skipped) == (20, {"empty_text": 1})
    assert read_shard(str(tmp_path / "txt_text_document")) == tok.encode_batch(lines)

    with open(tmp_path / "qa.jsonl", "w", encoding="utf-8") as f:
        for i, text in enumerate(lines):
            record = {"question": f"{i}번 질문", "answer": text}
            if i == 5:
                del record["answer"]  # skipped from both shards, which stay aligned
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    stats = preprocess([str(tmp_path / "qa.jsonl")], str(tmp_path / "qa"), tok_dir,
                       json_keys=["question", "answer"], workers=2, progress=False)
    assert stats.documents_written == 19 and stats.skipped == {"missing_key": 1}
    kept = [i for i in range(20) if i != 5]
    assert read_shard(str(tmp_path / "qa_question_document")) == tok.encode_batch([f"{i}번 질문" for i in kept])
    assert read_shard(str(tmp_path / "qa_answer_document")) == tok.encode_batch([lines[i] for i in kept])


def test_user_errors(corpus_and_tokenizer, tmp_path):
    corpus, tok_dir = corpus_and_tokenizer
    with pytest.raises(UserError, match="missing.jsonl does not exist"):
        preprocess([str(tmp_path / "missing.jsonl")], str(tmp_path / "o"), tok_dir, progress=False)
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(UserError, match=r"data\.csv: cannot tell the format"):
        preprocess([str(tmp_path / "data.csv")], str(tmp_path / "o"), tok_dir, progress=False)
    with pytest.raises(UserError, match="not a directory"):
        preprocess([corpus], str(tmp_path / "o"), str(tmp_path / "no_tok"), progress=False)
    with pytest.raises(UserError, match="workers"):
        preprocess([corpus], str(tmp_path / "o"), tok_dir, workers=0, progress=False)


def test_nothing_to_write_is_an_error(corpus_and_tokenizer, tmp_path):
    corpus, tok_dir = corpus_and_tokenizer
    with pytest.raises(UserError, match=r"no documents written(.|\n)*missing key: 300(.|\n)*corpus.jsonl:1: no key 'body'"):
        preprocess([corpus], str(tmp_path / "out"), tok_dir, json_keys=["body"], progress=False)
    assert os.listdir(tmp_path) == []


def test_cli_end_to_end(corpus_and_tokenizer, tmp_path):
    corpus, tok_dir = corpus_and_tokenizer
    run = subprocess.run(
        [sys.executable, "tools/preprocess_data.py", "--input", corpus, "--output-prefix", str(tmp_path / "cli"),
         "--tokenizer", tok_dir, "--workers", "2", "--append-eod", "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "documents read 300 = written 300 + skipped 0" in run.stdout
    assert "docs/s" in run.stdout and "MB/s" in run.stdout
    assert len(IndexedDataset(str(tmp_path / "cli_text_document"))) == 300


def test_cli_reports_user_errors(corpus_and_tokenizer, tmp_path, capsys):
    from tools.preprocess_data import main

    corpus, _ = corpus_and_tokenizer
    with pytest.raises(SystemExit) as e:
        main(["--input", corpus, "--output-prefix", str(tmp_path / "x"), "--tokenizer", str(tmp_path)])
    assert e.value.code == 2 and "hyperclova_tokenizer.json: missing" in capsys.readouterr().err


def test_killed_worker_fails_the_run_and_leaves_nothing(corpus_and_tokenizer, tmp_path, monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    from hyperclova.data import records

    corpus, tok_dir = corpus_and_tokenizer
    encode = records.BlockEncoder.__call__

    def dies_after_a_while(self, block):  # forked workers inherit the patch
        if block.first_line > 20:
            os._exit(9)  # as if the OOM killer struck
        return encode(self, block)

    monkeypatch.setattr(records.BlockEncoder, "__call__", dies_after_a_while)
    with pytest.raises(BrokenProcessPool):
        preprocess([corpus], str(tmp_path / "out"), tok_dir, workers=2, block_bytes=4000, progress=False)
    assert os.listdir(tmp_path) == []


def test_blocks_cut_at_line_ends(tmp_path):
    from hyperclova.data.records import read_blocks, split_lines

    lines = [b"x" * n for n in (0, 5, 40, 1, 0, 25, 3)]
    (tmp_path / "a.txt").write_bytes(b"\n".join(lines))  # no final newline
    (tmp_path / "b.txt").write_bytes(b"one\ntwo\n")
    blocks = list(read_blocks([str(tmp_path / "a.txt"), str(tmp_path / "b.txt")], ["text", "text"], 8))
    got = [(b.file_index, b.first_line + i, line) for b in blocks for i, line in enumerate(split_lines(b.data))]
    assert got == [(0, i + 1, line) for i, line in enumerate(lines)] + [(1, 1, b"one"), (1, 2, b"two")]
    assert all(b.data.endswith(b"\n") for b in blocks[:-2])


def test_interrupt_leaves_no_shard(corpus_and_tokenizer, tmp_path, monkeypatch):
    from hyperclova.data import serialize

    corpus, tok_dir = corpus_and_tokenizer
    consume, calls = serialize._consume, []

    def ctrl_c_on_third_block(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return consume(*args)

    monkeypatch.setattr(serialize, "_consume", ctrl_c_on_third_block)
    with pytest.raises(KeyboardInterrupt):
        preprocess([corpus], str(tmp_path / "out"), tok_dir, workers=2, block_bytes=4000, progress=False)
    assert os.listdir(tmp_path) == []
