"""lm-evaluation-harness's `local-completions` model scores a multiple-choice task through the
server (echo + logprobs, token-id prompts, the vLLM-style remote tokenizer endpoints), and its
log-likelihoods equal the model's own, computed here in-process."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from serve_helpers import API_KEY, ROOT

DOCS = [
    {"question": "서울의 날씨는", "choices": [" 맑고 따뜻했다.", " 주식이 올랐다.", " 골을 넣었다."], "answer": 0},
    {"question": "질문: 주말에 가볼 만한 곳", "choices": [" 추천해 주세요.", " 기준금리 인상", " 배송이 빨라요."], "answer": 0},
    {"question": "정부는 이번 발표에서", "choices": [" 밝혔다.", " 맛있어요!", " 화이팅"], "answer": 0},
    {"question": "이 제품을 사용해 보니", "choices": [" 만족스러워요.", " 결승골을 터뜨렸다.", " 특보를 발령했다."], "answer": 0},
]
TASK = """task: ko_serve_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
"""


def test_lm_eval_local_completions_scores_through_the_server(server, trained, tokenizer, tmp_path):
    pytest.importorskip("lm_eval")
    data = tmp_path / "ko_mc.jsonl"
    data.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in DOCS), encoding="utf-8")
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "ko_serve_mc.yaml").write_text(TASK.format(data=data), encoding="utf-8")
    out = tmp_path / "out"
    args = [sys.executable, "-m", "lm_eval", "run", "--model", "local-completions",
            "--model_args", f"base_url={server.base}/v1/completions,model=run,tokenizer_backend=remote,"
                            f"tokenized_requests=True,max_length=127,auth_token={API_KEY},num_concurrent=4",
            "--tasks", "ko_serve_mc", "--include_path", str(tmp_path / "tasks"), "--output_path", str(out),
            "--log_samples", "--batch_size", "1"]
    env = {**os.environ, "OPENAI_API_KEY": API_KEY, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(tmp_path / "hf_cache"), "TOKENIZERS_PARALLELISM": "false"}
    r = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    samples = [json.loads(line) for f in out.rglob("samples_ko_serve_mc_*.jsonl")
               for line in f.read_text(encoding="utf-8").splitlines()]
    assert len(samples) == len(DOCS)

    from hyperclova.generate import load_model

    model, _ = load_model(trained.checkpoint, "cpu")
    for s in samples:
        for arg, resp in zip(s["arguments"].values(), s["resps"]):
            context, continuation = arg["arg_0"], arg["arg_1"]
            got_ll, got_greedy = resp[0]
            ctx = tokenizer.encode(context)
            whole = tokenizer.encode(context + continuation)
            with torch.no_grad():
                lp = model(torch.tensor([whole]))[0, :, :tokenizer.vocab_size].float().log_softmax(-1)
            targets = whole[len(ctx):]
            pos = range(len(ctx) - 1, len(whole) - 1)
            want = sum(lp[p, t].item() for p, t in zip(pos, targets))
            greedy = all(lp[p].argmax().item() == t for p, t in zip(pos, targets))
            assert float(got_ll) == pytest.approx(want, abs=1e-4), (context, continuation)
            assert (got_greedy in (True, "True")) == greedy
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    assert 0 <= results["results"]["ko_serve_mc"]["acc,none"] <= 1
