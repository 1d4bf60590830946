"""A bounded load-and-fault run on loopback: 300 requests from 32 concurrent clients with random
settings, some malformed, some clients disconnecting mid-stream. The server stays up, every valid
request gets exactly its tokens, none is lost, /metrics adds up, and memory returns near its start."""
from __future__ import annotations

import concurrent.futures as cf
import json
import random

import requests

from serve_helpers import API_KEY, metric

N_REQUESTS, CLIENTS = 300, 32
PROMPTS = ["오늘 서울의 날씨는", "이 제품을 사용해 보니", "질문: 주말에 가볼 만한 곳", "정부는 이번 발표에서",
           "맛집", "경제 전문가들은 내년 성장률이 지난해보다"]
MALFORMED = [  # (body, expected status)
    (b'{"prompt": "x", "max_tokens": ', 400),
    (json.dumps({"prompt": "x", "max_tokens": "ten"}).encode(), 400),
    (json.dumps({"prompt": "x", "top_p": 0}).encode(), 400),
    (json.dumps({"prompt": "x", "model": "nope"}).encode(), 404),
    (json.dumps({"prompt": "서울 " * 300}).encode(), 400),
    (json.dumps({"prompt": 5}).encode(), 400),
]


def plan(seed=0):
    rng = random.Random(seed)
    jobs = []
    for i in range(N_REQUESTS):
        r = rng.random()
        if r < 0.1:
            jobs.append(("malformed", MALFORMED[i % len(MALFORMED)]))
        elif r < 0.15:
            jobs.append(("disconnect", {"prompt": rng.choice(PROMPTS), "max_tokens": 96, "stream": True,
                                        "temperature": 1.0, "ignore_eos": True}))
        else:
            body = {"prompt": rng.choice(PROMPTS), "max_tokens": rng.randint(1, 24), "n": rng.choice([1, 1, 2]),
                    "temperature": rng.choice([0.0, 0.7, 1.0]), "top_p": rng.choice([1.0, 0.9]),
                    "top_k": rng.choice([0, 40]), "stream": rng.random() < 0.5, "ignore_eos": True}
            if rng.random() < 0.3:
                body["seed"] = rng.randint(0, 1000)
            if rng.random() < 0.2:
                body["logprobs"] = 2
            jobs.append(("valid", body))
    return jobs


def run(session: requests.Session, base: str, job):
    kind, spec = job
    url = base + "/v1/completions"
    if kind == "malformed":
        raw, expect = spec
        r = session.post(url, data=raw, headers={"Content-Type": "application/json"}, timeout=60)
        return kind, r.status_code == expect and "error" in r.json(), r.status_code
    if kind == "disconnect":
        with session.post(url, json=spec, stream=True, timeout=60) as r:
            next(line for line in r.iter_lines() if line.startswith(b"data: "))
            r.raw._fp.close()  # the client goes away mid-stream
        return kind, True, 200
    expect = spec["max_tokens"] * spec["n"]
    if not spec["stream"]:
        r = session.post(url, json=spec, timeout=120)
        body = r.json()
        ok = r.status_code == 200 and body["usage"]["completion_tokens"] == expect and \
            len(body["choices"]) == spec["n"] and all(c["finish_reason"] == "length" for c in body["choices"])
        if "logprobs" in spec:
            ok &= all(len(c["logprobs"]["tokens"]) == spec["max_tokens"] for c in body["choices"])
        return kind, ok, r.status_code
    chunks = []
    with session.post(url, json=spec, stream=True, timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith(b"data: ") and line != b"data: [DONE]":
                chunks.append(json.loads(line[6:]))
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    ok = r.status_code == 200 and chunks[-1]["usage"]["completion_tokens"] == expect and finishes == ["length"] * spec["n"]
    return kind, ok, r.status_code


def test_load_and_faults(server):
    def scrape():
        return requests.get(server.base + "/metrics", timeout=10).text

    def session():
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {API_KEY}"
        return s

    warm = session()
    for p in PROMPTS:  # allocator warm-up before the memory baseline
        warm.post(server.base + "/v1/completions", json={"prompt": p, "max_tokens": 24, "n": 2}, timeout=60)
    rss0, m0 = server.rss_bytes(), scrape()
    h0 = server.get_json("/health")
    jobs = plan()
    sessions = [session() for _ in range(CLIENTS)]
    with cf.ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(lambda ij: run(sessions[ij[0] % CLIENTS], server.base, ij[1]), enumerate(jobs)))
    assert server.proc.poll() is None and server.get_json("/health")["status"] == "ok"
    bad = [(job, res) for job, res in zip(jobs, results) if not res[1]]
    assert not bad, bad[:5]
    assert len(results) == N_REQUESTS  # none lost

    m1 = scrape()
    kinds = [k for k, _ in jobs]
    valid = [spec for k, spec in jobs if k == "valid"]

    def delta(name, labels=""):
        return metric(m1, name, labels) - metric(m0, name, labels)

    ep = 'endpoint="/v1/completions",status="{}"'
    assert delta("hyperclova_requests_total", ep.format(200)) == kinds.count("valid") + kinds.count("disconnect")
    n_400 = sum(1 for k, spec in jobs if k == "malformed" and spec[1] == 400)
    assert delta("hyperclova_requests_total", ep.format(400)) == n_400
    assert delta("hyperclova_requests_total", ep.format(404)) == kinds.count("malformed") - n_400
    n_seq = sum(spec["n"] for spec in valid)
    # A disconnecting client's sequence is cancelled, unless it reached max_tokens before the
    # server saw the connection close (possible on a loaded machine): either way it is counted once.
    late = delta("hyperclova_sequences_finished_total", 'finish_reason="length"') - n_seq
    assert 0 <= late <= kinds.count("disconnect")
    tokens = sum(spec["n"] * spec["max_tokens"] for spec in valid)
    generated = delta("hyperclova_generation_tokens_total")
    assert tokens <= generated < tokens + 96 * kinds.count("disconnect")
    assert delta("hyperclova_time_to_first_token_seconds_count") == n_seq + kinds.count("disconnect")
    h1 = server.get_json("/health")
    assert h1["cancelled"] - h0["cancelled"] + late == kinds.count("disconnect")
    assert h1["running"] == 0 and h1["queued"] == 0
    grown = server.rss_bytes() - rss0
    assert grown < 64 * 2**20, f"server memory grew by {grown / 2**20:.1f} MiB"
