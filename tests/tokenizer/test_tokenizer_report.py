"""The tokenizer comparison report (docs/tokenizers.md)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hyperclova.tokenizer.report import evaluate, token_spans, vocab_overlap

from tokenizer_testdata import MIXED

REPO = Path(__file__).resolve().parents[2]


def test_metrics_per_type(toks, docs):
    texts = docs[:150] + ["희귀한 글자 龘 齉 포함"]
    stats = {k: evaluate(t, texts) for k, t in toks.items()}
    assert stats["morpheme-bbpe"].crossing_tokens == 0
    assert stats["bbpe"].crossing_share > 0.01
    assert stats["char-bpe"].unknown_tokens >= 2  # 龘 and 齉 are not in a 1,200-token vocabulary
    for kind in ("morpheme-bbpe", "bbpe", "spm"):
        assert stats[kind].unknown_tokens == 0
    for s in stats.values():
        assert 0 < s.tokens_per_char <= 4 and s.tokens_per_word >= s.tokens_per_char


def test_token_spans_cover_the_text(toks):
    for tok in toks.values():
        for text in MIXED:
            spans = token_spans(tok, text, tok.encode(text))
            assert spans[0][0] == 0 and spans[-1][1] == len(text.encode())


def test_vocab_overlap(toks):
    assert vocab_overlap(toks["bbpe"], toks["bbpe"]) == 1.0
    assert 0 < vocab_overlap(toks["bbpe"], toks["morpheme-bbpe"]) < 1


def test_report_cli_writes_tables_and_plot(corpus, tmp_path):
    png = tmp_path / "overlap.png"
    r = subprocess.run(
        [sys.executable, "tools/tokenizer_report.py", "--input", corpus, "--output",
         str(tmp_path / "rep"), "--types", "morpheme-bbpe", "bbpe", "--vocab-size", "500",
         "--ratios", "0.3", "--eval-docs", "100", "--png", str(png)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert [s["type"] for s in report["stats"]] == ["morpheme-bbpe", "bbpe"]
    assert report["stats"][0]["crossing_tokens"] == 0
    assert set(report["overlap"]) == {"morpheme-bbpe", "bbpe"}
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "tokens/char" in r.stdout
