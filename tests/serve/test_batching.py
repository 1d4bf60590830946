"""Continuous batching gives every request what it would get alone: greedy requests the tokens of
`python -m hyperclova.generate --greedy`, seeded ones the same text for the same seed, whatever
else is in the batch; a client that goes away frees its slot at once."""
from __future__ import annotations

import concurrent.futures as cf
import os
import subprocess
import sys
import time

import requests

from serve_helpers import API_KEY, ROOT

GREEDY_PROMPTS = ["오늘 서울의 날씨는", "이 제품을 사용해 보니 생각보다", "질문: 주말에 가볼 만한 곳",
                  "정부는 이번 발표에서", "부산", "어제 본 영화가 너무 재미있어서 친구들에게 추천했는데 다들",
                  "경제 전문가들은 내년", "맛집 후기"]
MAX_NEW = 24
# Eight other requests of different lengths and settings that run in the same batch.
OTHERS = [
    dict(prompt="한국 축구 대표팀은", max_tokens=40, temperature=1.0, seed=1),
    dict(prompt="날씨", max_tokens=7, temperature=0.7, top_p=0.8, seed=2),
    dict(prompt="이번 주말에는 가족과 함께 바다에 가기로 했다. 그런데", max_tokens=30, temperature=1.2,
         seed=3, extra_body={"top_k": 20}),
    dict(prompt="질문:", max_tokens=16, temperature=0.9, frequency_penalty=1.0, seed=4),
    dict(prompt="서울 시내 교통", max_tokens=50, temperature=1.0, presence_penalty=0.5, seed=5, n=2),
    dict(prompt="오늘의 뉴스", max_tokens=12, temperature=0.8, seed=6, logprobs=3),
    dict(prompt="리뷰: 배송이", max_tokens=20, temperature=1.0, seed=7, extra_body={"repetition_penalty": 1.3}),
    dict(prompt="요리", max_tokens=3, temperature=1.0, seed=8),
]


def cli_greedy(trained) -> list[str]:
    """What `python -m hyperclova.generate --greedy` prints for each prompt."""
    args = [sys.executable, "-m", "hyperclova.generate", "--checkpoint", str(trained.checkpoint),
            "--greedy", "--max-new-tokens", str(MAX_NEW), "--device", "cpu"]
    for p in GREEDY_PROMPTS:
        args += ["--prompt", p]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    texts = []
    for i, p in enumerate(GREEDY_PROMPTS):  # "### {prompt}{text}\n\n" per prompt
        start = out.index(f"### {p}") + len(f"### {p}")
        end = out.index(f"\n\n### {GREEDY_PROMPTS[i + 1]}", start) if i + 1 < len(GREEDY_PROMPTS) else len(out) - 2
        texts.append(out[start:end])
    return texts


def greedy(client, prompt):
    r = client.completions.create(model="run", prompt=prompt, max_tokens=MAX_NEW, temperature=0)
    assert "content_filter_results" not in r.choices[0].model_extra  # the text is the model's own
    return r.choices[0].text


def other(client, kw):
    kw = dict(kw)
    r = client.completions.create(model="run", stream=False, **kw)
    return [c.text for c in r.choices]


def test_greedy_and_seeded_equal_alone_and_in_a_batch_of_16(client, server, trained):
    expect = cli_greedy(trained)
    alone = [greedy(client, p) for p in GREEDY_PROMPTS]
    assert alone == expect
    others_alone = [other(client, kw) for kw in OTHERS]
    peak_before = server.get_json("/health")["peak_batch"]
    with cf.ThreadPoolExecutor(16) as pool:
        g = [pool.submit(greedy, client, p) for p in GREEDY_PROMPTS]
        o = [pool.submit(other, client, kw) for kw in OTHERS]
        together, others_together = [f.result() for f in g], [f.result() for f in o]
    assert together == expect
    assert others_together == others_alone
    assert server.get_json("/health")["peak_batch"] >= max(8, peak_before)  # they did share batches


def test_client_disconnect_frees_the_slot(server):
    before = server.get_json("/health")
    body = {"model": "run", "prompt": "오늘", "max_tokens": 96, "temperature": 1.0, "stream": True,
            "ignore_eos": True}
    with requests.post(server.base + "/v1/completions", json=body, stream=True, timeout=30,
                       headers={"Authorization": f"Bearer {API_KEY}"}) as r:
        first = next(line for line in r.iter_lines(decode_unicode=True) if line.startswith("data: "))
        assert '"text_completion"' in first
    # the connection is closed after the first chunk, long before 96 tokens
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        h = server.get_json("/health")
        if h["cancelled"] > before["cancelled"] and h["running"] == 0:
            break
        time.sleep(0.02)
    assert h["cancelled"] == before["cancelled"] + 1 and h["running"] == 0 and h["queued"] == 0
