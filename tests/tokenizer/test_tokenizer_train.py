"""Training: inputs, sampling, workers, bad input, and the command-line tool."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hyperclova.errors import UserError
from hyperclova.tokenizer import load_tokenizer, train_tokenizer

REPO = Path(__file__).resolve().parents[2]


def _train(files, out, **kw):
    kw.setdefault("type", "bbpe")
    kw.setdefault("vocab_size", 500)
    return train_tokenizer([str(f) for f in files], str(out), show_progress=False, verify_docs=50, **kw)


def test_sampling_is_reproducible_and_bounded(corpus, tmp_path):
    a = _train([corpus], tmp_path / "a", sample_ratio=0.3, seed=1)
    b = _train([corpus], tmp_path / "b", sample_ratio=0.3, seed=1)
    c = _train([corpus], tmp_path / "c", sample_ratio=0.3, seed=2)
    assert a.hf_tokenizer.get_vocab() == b.hf_tokenizer.get_vocab()
    assert a.meta["training"]["docs"] == b.meta["training"]["docs"]
    assert a.meta["training"]["docs"] != c.meta["training"]["docs"]
    total = a.meta["training"]["docs_seen"]
    assert 0.2 * total < a.meta["training"]["docs"] < 0.4 * total
    d = _train([corpus], tmp_path / "d", sample_bytes=100_000)
    assert 100_000 <= d.meta["training"]["bytes"] < 110_000


def test_workers_do_not_change_the_morpheme_tokenizer(corpus, tmp_path):
    one = _train([corpus], tmp_path / "w1", type="morpheme-bbpe", sample_ratio=0.3, workers=1)
    two = _train([corpus], tmp_path / "w2", type="morpheme-bbpe", sample_ratio=0.3, workers=2)
    assert one.hf_tokenizer.get_vocab() == two.hf_tokenizer.get_vocab()


def test_plain_text_and_gzip_inputs(tmp_path):
    import gzip

    lines = "오늘은 날씨가 좋습니다.\n내일은 비가 옵니다.\n" * 200
    (tmp_path / "a.txt").write_text(lines, encoding="utf-8")
    with gzip.open(tmp_path / "b.jsonl.gz", "wt", encoding="utf-8") as f:
        for line in lines.splitlines():
            f.write(json.dumps({"body": line}, ensure_ascii=False) + "\n")
    t1 = _train([tmp_path / "a.txt"], tmp_path / "t1")
    t2 = _train([tmp_path / "b.jsonl.gz"], tmp_path / "t2", json_keys=["body"])
    assert t1.meta["training"]["docs"] == t2.meta["training"]["docs"] == 400
    assert t1.decode(t1.encode("오늘은 비가")) == "오늘은 비가"


def test_argument_errors_and_overwrite(tmp_path):
    """Bad lines are the reader's business (tests/data/test_reader.py, through every tool); here the
    trainer's own arguments, and an existing tokenizer replaced only with overwrite."""
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"text": f"문서 {i} 가나다"}, ensure_ascii=False) + "\n" for i in range(50)),
                    encoding="utf-8")
    with pytest.raises(UserError, match="vocab-size 100 is too small"):
        _train([good], tmp_path / "x", vocab_size=100)
    with pytest.raises(UserError, match="--type must be one of"):
        _train([good], tmp_path / "x", type="wordpiece")
    with pytest.raises(UserError, match="does not exist"):
        _train([tmp_path / "nope.jsonl"], tmp_path / "x")
    with pytest.raises(UserError, match="not both"):
        _train([good], tmp_path / "x", sample_ratio=0.5, sample_bytes=10)
    with pytest.raises(UserError, match=r"no documents to train on(.|\n)*missing key: 50"):
        _train([good], tmp_path / "x", json_keys=["body"])
    first = _train([good], tmp_path / "tok", type="spm", vocab_size=300)
    assert (tmp_path / "tok" / "spm.model").exists()
    with pytest.raises(UserError, match="--output .*tok is not empty.*pass --overwrite"):
        _train([good], tmp_path / "tok")
    assert load_tokenizer(tmp_path / "tok").type == first.type == "spm"
    _train([good], tmp_path / "tok", overwrite=True)  # bbpe replaces spm: no spm.model left behind
    assert load_tokenizer(tmp_path / "tok").type == "bbpe" and not (tmp_path / "tok" / "spm.model").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=r"--output .*file/tok: .*file is a file, not a directory"):
        _train([good], tmp_path / "file" / "tok")


def _cli(*args):
    return subprocess.run([sys.executable, "tools/train_tokenizer.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_cli_trains_and_reports_errors_without_traceback(corpus, tmp_path):
    out = tmp_path / "cli"
    r = _cli("--input", corpus, "--output", str(out), "--type", "morpheme-bbpe",
             "--vocab-size", "600", "--sample-ratio", "0.5", "--workers", "2", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "trained morpheme-bbpe tokenizer" in r.stdout
    tok = load_tokenizer(out)
    assert tok.type == "morpheme-bbpe" and tok.meta["training"]["sample_ratio"] == 0.5
    r = _cli("--input", corpus, "--output", str(out), "--overwrite", "--json-keys", "body")
    assert r.returncode == 2 and "no key 'body'" in r.stderr and "Traceback" not in r.stderr


def test_byte_budget_over_gz_samples_every_file(tmp_path):
    """A byte budget over .gz inputs is spread over every file, not spent on the first."""
    import gzip

    from hyperclova.data.reader import ReadStats, expand_inputs
    from hyperclova.tokenizer.train import _documents, sample_ratio_for

    files = []
    for i in range(4):
        f = tmp_path / f"p{i}.jsonl.gz"
        with gzip.open(f, "wt", encoding="utf-8") as g:
            g.writelines(f'{{"text": "file{i} 문서 {j} ' + "가나다라 " * 20 + '"}\n' for j in range(2000))
        files.append(str(f))
    text_bytes = sum(len(gzip.open(f).read()) for f in files)
    inputs = expand_inputs(files)
    ratio = sample_ratio_for(inputs, None, text_bytes // 4)
    assert 0.2 < ratio < 0.3
    used = {"docs": 0, "bytes": 0}
    seen = {d.split()[0] for d in _documents(inputs, ("text",), ratio, 0, text_bytes // 4, False, ReadStats(), used)}
    assert len(seen) >= 3
