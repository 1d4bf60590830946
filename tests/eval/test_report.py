"""The Table 3-shaped report and the score plot, from result files."""
from __future__ import annotations

import json

import pytest

from hyperclova.errors import UserError
from hyperclova.eval.report import load_results, markdown_table, plot
from tools.eval_report import main as report_main


def result(task, metrics, params, step, tokenizer="morpheme-bbpe", **extra):
    return {"task": task, "step": step, "checkpoint": f"runs/x/step_{step:08d}",
            "model": {"preset": None, "params": params, "tokenizer_type": tokenizer},
            "metrics": {k: {"mean": m, "std": s, "n": n, "runs": []} for k, (m, s, n) in metrics.items()},
            **extra}


def write(tmp_path, results):
    paths = []
    for i, r in enumerate(results):
        p = tmp_path / f"r{i}.json"
        p.write_text(json.dumps(r, ensure_ascii=False), encoding="utf-8")
        paths.append(str(p))
    return paths


def test_table_puts_checkpoints_side_by_side_in_table_3_order(tmp_path, capsys):
    rs = [result("ynat", {"macro_f1": (58.67, 1.2, 3), "accuracy": (60.0, 1.0, 3)}, 1_300_000_000, 100),
          result("nsmc", {"accuracy": (82.5, 0.4, 12)}, 1_300_000_000, 100,
                 majority_baseline={"accuracy": 50.1},
                 protocol={"prompts": 600, "prompts_with_dropped_demos": 12, "demos_dropped": 30,
                           "queries_too_long": 0}),
          result("korquad", {"exact_match": (55.28, 0, 1), "f1": (72.98, 0, 1)}, 137_000_000, 50)]
    table = markdown_table(load_results(write(tmp_path, rs)), baseline=True)
    lines = table.splitlines()
    assert lines[0] == "| model | NSMC (Acc) | KorQuAD (EM) | KorQuAD (F1) | YNAT (F1) |"
    assert lines[2] == "| 1.3B @ step 100 | 82.50 ± 0.40 |  |  | 58.67 ± 1.20 |"
    assert lines[3] == "| 137M @ step 50 |  | 55.28 | 72.98 |  |"
    assert lines[4] == "| majority class | 50.10 |  |  |  |"
    assert "nsmc (1.3B @ step 100): 12 of 600 prompts dropped 30 demonstrations" in table
    out = tmp_path / "t.md"
    report_main(write(tmp_path, rs) + ["--output", str(out)])
    assert out.read_text(encoding="utf-8") == capsys.readouterr().out.rstrip("\n") + "\n"


def test_plot_writes_a_png_per_tokenizer_line(tmp_path):
    rs = [result("nsmc", {"accuracy": (a, 1.0, 3)}, p, 10, tok)
          for a, p, tok in [(60, 1e8, "bbpe"), (70, 1e9, "bbpe"), (65, 1e8, "morpheme-bbpe")]]
    out = tmp_path / "p.png"
    plot(load_results(write(tmp_path, rs)), "nsmc", "accuracy", "params", str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UserError, match="no result for task 'ynat'"):
        plot(load_results(write(tmp_path, rs)), "ynat", "macro_f1", "params", str(out))
    bad = tmp_path / "bad.json"
    bad.write_text("[]", encoding="utf-8")
    with pytest.raises(UserError, match="bad.json: not a hyperclova.eval result file"):
        load_results([str(bad)])
