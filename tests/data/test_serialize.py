"""The serializer: ids equal the tokenizer's, bad input is counted by reason, output is atomic."""
from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

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
    # The reference encoding (HF engine, MeCab-ko on every text); the serializer runs tiktoken and
    # the morpheme cache (on by default) and must write the same ids.
    tok = load_tokenizer(tok_dir, engine="hf", segment_cache=False)
    stats = preprocess([corpus], str(tmp_path / "out"), tok_dir, workers=workers, append_eod=True,
                       block_bytes=block_bytes, progress=False)
    texts = texts_of(corpus)
    want = [ids + [tok.eod_id] for ids in tok.encode_batch(texts)]
    prefix = str(tmp_path / "out_text_document")
    assert IndexedDataset(prefix).index.dtype is np.uint16  # vocab 600 < 65,500
    assert read_shard(prefix) == want
    assert (stats.read.read, stats.read.kept, stats.read.skipped) == (300, 300, {})
    assert stats.tokens["text"] == sum(map(len, want))
    assert stats.bytes_read == os.path.getsize(corpus)
    assert sorted(os.listdir(tmp_path)) == sorted(f"out_text_document{s}" for s in (".bin", ".idx", ".meta.json"))


def test_existing_output_needs_overwrite_and_strict_keeps_it(corpus_and_tokenizer, tmp_path):
    corpus, tok_dir = corpus_and_tokenizer
    preprocess([corpus], str(tmp_path / "out"), tok_dir, workers=1, progress=False)
    before = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)}
    with pytest.raises(UserError, match=r"--output-prefix .*out: .*out_text_document\.bin, .*out_text_document\.idx already exist; pass --overwrite"):
        preprocess([corpus], str(tmp_path / "out"), tok_dir, workers=1, progress=False)
    lines = open(corpus, "rb").read().splitlines()
    (tmp_path / "mixed.jsonl").write_bytes(b"\n".join(lines[:30] + [b'{"text": 5}'] + lines[30:40]))
    with pytest.raises(UserError, match=r"mixed\.jsonl:31: value is not a string"):
        preprocess([str(tmp_path / "mixed.jsonl")], str(tmp_path / "out"), tok_dir, workers=2,
                   strict=True, block_bytes=500, progress=False, overwrite=True)
    after = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path) if n != "mixed.jsonl"}
    assert after == before  # no temporary files left, the complete old shard untouched
    preprocess([corpus], str(tmp_path / "out"), tok_dir, workers=1, progress=False, overwrite=True, append_eod=True)
    assert len((tmp_path / "out_text_document.bin").read_bytes()) > len(before["out_text_document.bin"])  # replaced


def test_output_prefix_under_a_file_is_a_clear_error(corpus_and_tokenizer, tmp_path):
    corpus, tok_dir = corpus_and_tokenizer
    (tmp_path / "data").write_text("a file, not a directory")
    with pytest.raises(UserError, match=r"--output-prefix .*data/sub/corpus: .*data is a file, not a directory"):
        preprocess([corpus], str(tmp_path / "data" / "sub" / "corpus"), tok_dir, progress=False)


def test_plain_text_and_several_keys(corpus_and_tokenizer, tmp_path):
    corpus, tok_dir = corpus_and_tokenizer
    tok = load_tokenizer(tok_dir)
    lines = [t.replace("\n", " ") for t in texts_of(corpus)[:20]]
    (tmp_path / "docs.txt").write_text("\n".join(lines[:10]) + "\n\n" + "\n".join(lines[10:]) + "\n", encoding="utf-8")
    stats = preprocess([str(tmp_path / "docs.txt")], str(tmp_path / "txt"), tok_dir, progress=False)
    assert (stats.documents_written, stats.read.skipped) == (20, {"empty_text": 1})
    assert read_shard(str(tmp_path / "txt_text_document")) == tok.encode_batch(lines)

    with open(tmp_path / "qa.jsonl", "w", encoding="utf-8") as f:
        for i, text in enumerate(lines):
            record = {"question": f"{i}번 질문", "answer": text}
            if i == 5:
                del record["answer"]  # skipped from both shards, which stay aligned
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    stats = preprocess([str(tmp_path / "qa.jsonl")], str(tmp_path / "qa"), tok_dir,
                       json_keys=["question", "answer"], workers=2, progress=False)
    assert stats.documents_written == 19 and stats.read.skipped == {"missing_key": 1}
    kept = [i for i in range(20) if i != 5]
    assert read_shard(str(tmp_path / "qa_question_document")) == tok.encode_batch([f"{i}번 질문" for i in kept])
    assert read_shard(str(tmp_path / "qa_answer_document")) == tok.encode_batch([lines[i] for i in kept])


def test_user_errors(corpus_and_tokenizer, tmp_path):
    corpus, tok_dir = corpus_and_tokenizer
    with pytest.raises(UserError, match="input .*missing.jsonl does not exist"):
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
         "--tokenizer", tok_dir, "--workers", "999", "--append-eod", "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "note: --workers 999 is more than the" in run.stderr  # clamped to the usable cores
    assert "read 300 = kept 300 + skipped 0" in run.stdout
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


# --- signals: a killed or terminated run leaves no workers and no files behind ---------------------


@pytest.fixture(scope="module")
def long_corpus(tmp_path_factory) -> str:
    from hyperclova.corpus.synthetic import generate_corpus

    path = tmp_path_factory.mktemp("long") / "long.jsonl"
    generate_corpus(path, n_docs=10000, seed=1)  # seconds of morpheme-aware encoding
    return str(path)


def _children(pid: int) -> list[int]:
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = open(stat).read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.split("/")[2]))
    return out


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for p in pids:
        try:
            if open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
                alive.append(p)
        except OSError:
            pass
    return alive


def _start_serializer(corpus: str, tok_dir: str, prefix: str, workers: str):
    proc = subprocess.Popen(
        [sys.executable, "tools/preprocess_data.py", "--input", corpus, "--output-prefix", prefix, "--tokenizer",
         tok_dir, "--workers", workers, "--block-mb", "0.05", "--no-progress"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until the workers run and the shard is being written
        kids = _children(proc.pid)
        if len(kids) >= 2 and glob.glob(prefix + "_text_document.tmp-*.bin") and proc.poll() is None:
            time.sleep(0.5)
            return proc, kids
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the serializer did not start its workers")


def _wait_gone(pids: list[int], seconds: float = 20) -> list[int]:
    deadline = time.monotonic() + seconds
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _alive(pids)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_cleans_up_like_ctrl_c(corpus_and_tokenizer, long_corpus, tmp_path):
    _, tok_dir = corpus_and_tokenizer
    proc, kids = _start_serializer(long_corpus, tok_dir, str(tmp_path / "out"), "999")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated: temporary files removed, no shard written" in err and "Traceback" not in err
    assert "note: --workers 999 is more than the" in err
    assert _wait_gone(kids) == [] and os.listdir(tmp_path) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkill_takes_the_workers_along_and_a_rerun_clears_the_leftovers(corpus_and_tokenizer, long_corpus,
                                                                         tmp_path):
    _, tok_dir = corpus_and_tokenizer
    prefix = str(tmp_path / "out")
    proc, kids = _start_serializer(long_corpus, tok_dir, prefix, "2")
    proc.kill()
    proc.communicate(timeout=60)
    assert _wait_gone(kids) == []  # no orphan keeps encoding
    assert glob.glob(prefix + "_text_document.tmp-*")  # what the killed writer left
    corpus, _ = corpus_and_tokenizer  # a short rerun into the same prefix
    rerun = subprocess.run(
        [sys.executable, "tools/preprocess_data.py", "--input", corpus, "--output-prefix", prefix,
         "--tokenizer", tok_dir, "--workers", "2", "--no-progress"], cwd=REPO, capture_output=True, text=True,
        timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(os.listdir(tmp_path)) == [f"out_text_document{s}" for s in (".bin", ".idx", ".meta.json")]
