"""`python -m hyperclova.eval` end to end on the fixture files, in process (one subprocess for
the command line's error path)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from eval_helpers import FIXTURES
from hyperclova.errors import UserError
from hyperclova.eval import run_evaluation
from hyperclova.eval.metrics import korquad_scores

QUIET = {"log": lambda *a, **k: None}


def test_nsmc_result_file_has_runs_protocol_counts_and_prompts(ckpt, tmp_path):
    out, preds = tmp_path / "nsmc.json", tmp_path / "nsmc_pred.jsonl"
    res = run_evaluation(ckpt, "nsmc", [str(FIXTURES / "ratings_test.txt")],
                         train=str(FIXTURES / "ratings_train.txt"), shots=3, runs=2,
                         output=str(out), predictions=str(preds), **QUIET)
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved["task"] == "nsmc" and saved["checkpoint"] == ckpt
    acc = saved["metrics"]["accuracy"]
    assert acc["n"] == 2 and len(acc["runs"]) == 2 and acc["mean"] == pytest.approx(sum(acc["runs"]) / 2)
    assert saved["n_examples"] == 8 and saved["data"]["test"]["skipped"] == {"empty_document": 1}
    assert saved["config"]["num_fewshot"] == 3 and saved["config"]["runs"] == 2
    assert saved["first_prompts"][0].endswith("문장: 굳 ㅋ\n감정:")
    assert saved["protocol"]["prompts"] == 16
    assert saved["majority_baseline"]["accuracy"] == pytest.approx(100 * 5 / 8)
    assert saved["model"]["n_layers"] == 2 and saved["wall_time_s"] > 0
    rows = [json.loads(line) for line in preds.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 16 and {r["run"] for r in rows} == {0, 1}
    run0 = [r for r in rows if r["run"] == 0]
    assert 100 * sum(r["gold"] == r["prediction"] for r in run0) / 8 == acc["runs"][0]
    assert res["metrics"] == saved["metrics"]


def test_korquad_writes_the_official_prediction_file(ckpt, tmp_path):
    preds = tmp_path / "pred.json"
    res = run_evaluation(ckpt, "korquad", [str(FIXTURES / "korquad_dev.json")],
                         predictions=str(preds), **QUIET)
    official = json.loads(preds.read_text(encoding="utf-8"))
    assert sorted(official) == ["6566495-0-0", "6566495-0-1", "6566495-0-2", "6566495-0-3",
                                "6566495-0-4", "6566518-0-0", "6566518-0-1"]
    assert all(isinstance(v, str) for v in official.values())
    data = json.loads((FIXTURES / "korquad_dev.json").read_text(encoding="utf-8"))
    golds = {qa["id"]: [a["text"] for a in qa["answers"]]
             for art in data["data"] for par in art["paragraphs"] for qa in par["qas"]}
    # the official scoring of the written file gives the reported numbers
    scores = korquad_scores(official, golds)
    assert res["metrics"]["exact_match"]["mean"] == pytest.approx(scores["exact_match"])
    assert res["metrics"]["f1"]["mean"] == pytest.approx(scores["f1"])


def test_ynat_sts_and_translation_tasks_run(ckpt, tmp_path):
    y = run_evaluation(ckpt, "ynat", [str(FIXTURES / "ynat_dev.json")],
                       train=str(FIXTURES / "ynat_train.json"), shots=2, runs=1, **QUIET)
    assert set(y["metrics"]) == {"macro_f1", "accuracy"} and y["n_examples"] == 5
    s = run_evaluation(ckpt, "klue_sts", [str(FIXTURES / "klue-sts_dev.json")],
                       train=str(FIXTURES / "klue-sts_dev.json"), shots=1, runs=1, **QUIET)
    assert set(s["metrics"]) == {"f1", "pearson"}
    t = run_evaluation(ckpt, "aihub_enko", [str(FIXTURES / "aihub_dev.csv")],
                       train=str(FIXTURES / "aihub_dev.csv"), shots=1, **QUIET)
    assert t["config"]["target_lang"] == "ko" and 0 <= t["metrics"]["bleu"]["mean"] <= 100
    assert t["n_examples"] == 4


def test_a_users_own_task_file(ckpt, tmp_path):
    (tmp_path / "task.yaml").write_text(
        "task: my_sentiment\nformat: nsmc\n"
        f"data_files: {{train: {FIXTURES / 'ratings_train.txt'}, test: {FIXTURES / 'ratings_test.txt'}}}\n"
        "output_type: multiple_choice\n"
        "doc_to_text: \"리뷰: {{document}}\\n평가:\"\n"
        "doc_to_target: \"{{label}}\"\n"
        "doc_to_choice: [나쁨, 좋음]\n"
        "num_fewshot: 2\nlength_normalization: tokens\nmetric: accuracy\n", encoding="utf-8")
    res = run_evaluation(ckpt, str(tmp_path / "task.yaml"), limit=4, **QUIET)
    assert res["task"] == "my_sentiment" and res["n_examples"] == 4
    assert res["first_prompts"][0].endswith("리뷰: 굳 ㅋ\n평가:")
    assert res["config"]["length_normalization"] == "tokens"


def test_perplexity_on_a_shard(ckpt, tok, tmp_path):
    import numpy as np

    from hyperclova.data.indexed import ShardWriter, dtype_for_vocab

    texts = ["오늘 서울의 날씨는 맑겠습니다.", "이 제품을 사용해 보니 정말 좋아요. " * 10]
    docs = [tok.encode(t) + [tok.eod_id] for t in texts]
    prefix = str(tmp_path / "valid_text_document")
    w = ShardWriter(prefix, dtype_for_vocab(tok.vocab_size), tok.vocab_size)
    w.add_documents(np.concatenate([np.array(d) for d in docs]), np.array([len(d) for d in docs]))
    w.commit()
    res = run_evaluation(ckpt, "perplexity", [prefix + ".bin"], window=64, stride=32, **QUIET)
    d = res["details"]
    assert d["documents"] == 2 and d["tokens"] == sum(len(x) - 1 for x in docs)
    assert d["chars"] == sum(len(t) for t in texts)
    assert res["metrics"]["bits_per_char"]["mean"] > 0 and d["window"] == 64 and d["stride"] == 32

    # a shard whose sidecar names another tokenizer is refused, naming the file
    other = str(tmp_path / "other_text_document")
    w = ShardWriter(other, dtype_for_vocab(tok.vocab_size), tok.vocab_size, tokenizer_fingerprint="0" * 64)
    w.add_documents(np.concatenate([np.array(d) for d in docs]), np.array([len(d) for d in docs]))
    w.commit()
    with pytest.raises(UserError, match="other_text_document"):
        run_evaluation(ckpt, "perplexity", [other + ".bin"], window=64, stride=32, **QUIET)


def test_bad_input_is_one_line_exit_2(ckpt, tmp_path):
    bad = tmp_path / "ratings_test.txt"
    bad.write_text("id\tdocument\tlabel\n1\tgood\n", encoding="utf-8")
    with pytest.raises(UserError, match="ratings_test.txt:2: expected 3 tab-separated"):
        run_evaluation(ckpt, "nsmc", [str(bad)], shots=0, **QUIET)
    with pytest.raises(UserError, match="takes one test file, got 2"):  # not a silent drop
        run_evaluation(ckpt, "nsmc", [str(bad), str(bad)], shots=0, **QUIET)
    with pytest.raises(UserError, match="task nsmc does not read --window;"):  # not ignored
        run_evaluation(ckpt, "nsmc", [str(bad)], window=64, **QUIET)
    with pytest.raises(UserError, match="perplexity does not read --shots, --predictions;"):
        run_evaluation(ckpt, "perplexity", [str(bad)], shots=2, predictions="p.jsonl", **QUIET)
    proc = subprocess.run([sys.executable, "-m", "hyperclova.eval", "--checkpoint", ckpt,
                           "--task", "nsmc", "--data", str(bad), "--shots", "0"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {bad}:2: expected 3 tab-separated columns (id, document, label), got 2"]


def test_jsonl_task_and_text_perplexity_go_through_the_one_reader(ckpt, tok, tmp_path):
    import numpy as np

    from hyperclova.data.indexed import ShardWriter, dtype_for_vocab

    data = tmp_path / "qa.jsonl"
    data.write_text('{"q": "하늘의 색은?", "a": "파랑", "label": 1}\n'
                    'not json\n'
                    '{"q": "바다의 색은?", "a": "파랑", "label": 0}\n'
                    '{"a": "no question"}\n', encoding="utf-8")
    (tmp_path / "t.yaml").write_text(
        "task: qa\nformat: jsonl\ndata_files: {test: qa.jsonl}\noutput_type: multiple_choice\n"
        "doc_to_text: \"질문: {{q}}\\n정답인가?\"\ndoc_to_target: \"{{label}}\"\n"
        "doc_to_choice: [아니오, 예]\nmetric: accuracy\n", encoding="utf-8")
    res = run_evaluation(ckpt, str(tmp_path / "t.yaml"), **QUIET)
    assert res["n_examples"] == 2
    assert res["data"]["test"]["skipped"] == {"invalid_json": 1, "missing_key": 1}
    # perplexity of texts read as JSONL equals that of the same texts serialized into a shard
    texts = ["오늘 서울의 날씨는 맑겠습니다.", "이 제품을 사용해 보니 정말 좋아요. " * 6]
    jl = tmp_path / "valid.jsonl"
    jl.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts) + "\n",
                  encoding="utf-8")
    docs = [tok.encode(t) + [tok.eod_id] for t in texts]
    prefix = str(tmp_path / "valid_text_document")
    w = ShardWriter(prefix, dtype_for_vocab(tok.vocab_size), tok.vocab_size)
    w.add_documents(np.concatenate([np.array(d) for d in docs]), np.array([len(d) for d in docs]))
    w.commit()
    a = run_evaluation(ckpt, "perplexity", [str(jl)], window=32, stride=16, **QUIET)["details"]
    b = run_evaluation(ckpt, "perplexity", [prefix], window=32, stride=16, **QUIET)["details"]
    assert a["documents"] == b["documents"] == 2 and a["tokens"] == b["tokens"]
    assert a["bits_per_char"] == pytest.approx(b["bits_per_char"], rel=1e-6)
