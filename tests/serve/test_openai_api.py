"""The official `openai` client against a live server: every endpoint answers as OpenAI's would."""
from __future__ import annotations

import concurrent.futures as cf
import json
import urllib.request

import openai
import pytest

from serve_helpers import API_KEY, metric

PROMPT = "오늘 서울의 날씨는"


def post(server, path, body, key=API_KEY, raw: bytes | None = None):
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(server.base + path, data=data, method="POST",
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {key}"} if key else {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_completion_greedy_usage_and_models(client, server, tokenizer):
    models = client.models.list()
    assert [m.id for m in models.data] == ["run"]
    r = client.completions.create(model="run", prompt=PROMPT, max_tokens=12, temperature=0)
    c = r.choices[0]
    assert r.object == "text_completion" and r.model == "run" and c.index == 0
    n_prompt = len(tokenizer.encode(PROMPT))
    assert r.usage.prompt_tokens == n_prompt
    assert 1 <= r.usage.completion_tokens <= 12 and r.usage.total_tokens == n_prompt + r.usage.completion_tokens
    assert c.finish_reason in ("stop", "length") and c.text
    assert c.finish_reason == "stop" or r.usage.completion_tokens == 12
    again = client.completions.create(model="run", prompt=PROMPT, max_tokens=12, temperature=0)
    assert again.choices[0].text == c.text  # greedy is deterministic


def test_prompt_lists_token_ids_and_n(client, tokenizer):
    ids = tokenizer.encode(PROMPT)
    r = client.completions.create(model="run", prompt=[PROMPT, "정부는 이번 발표에서"], max_tokens=5,
                                  temperature=1.0, n=2, seed=7)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    by_ids = client.completions.create(model="run", prompt=ids, max_tokens=5, temperature=1.0, n=2, seed=7)
    # the same prompt as ids, the same seed: the same two choices as the text prompt's
    assert [c.text for c in by_ids.choices] == [c.text for c in r.choices[:2]]
    assert r.choices[0].text != r.choices[1].text or r.choices[0].text == ""
    assert r.usage.prompt_tokens == len(ids) + len(tokenizer.encode("정부는 이번 발표에서"))


def test_stop_sequence_is_checked_on_text(client):
    base = client.completions.create(model="run", prompt=PROMPT, max_tokens=24, temperature=0).choices[0].text
    assert len(base) >= 4
    stop = base[2:4]  # two characters from inside the greedy text, wherever tokens split
    r = client.completions.create(model="run", prompt=PROMPT, max_tokens=24, temperature=0, stop=[stop])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].text == base[: base.index(stop)]


def test_streaming_matches_whole_response(client):
    kw = dict(model="run", prompt=PROMPT, max_tokens=20, temperature=0.9, seed=11)
    whole = client.completions.create(**kw)
    chunks = list(client.completions.create(stream=True, **kw))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    assert all("\ufffd" not in c.choices[0].text for c in chunks if c.choices) or "\ufffd" in text
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert sum(1 for c in chunks if c.choices and c.choices[0].text) >= 2  # arrives in pieces
    usage = list(client.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    assert usage[-1].choices == [] and usage[-1].usage.total_tokens == whole.usage.total_tokens


def test_chat_completion_and_stream(client):
    msgs = [{"role": "system", "content": "친절한 상담원입니다."}, {"role": "user", "content": "주말에 가볼 만한 곳은?"}]
    r = client.chat.completions.create(model="run", messages=msgs, max_tokens=16, temperature=0)
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert "\n사용자:" not in r.choices[0].message.content  # the template's turn marker stops it
    chunks = list(client.chat.completions.create(model="run", messages=msgs, max_tokens=16,
                                                 temperature=0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == r.choices[0].message.content
    lp = client.chat.completions.create(model="run", messages=msgs, max_tokens=4, temperature=0,
                                        logprobs=True, top_logprobs=3)
    content = lp.choices[0].logprobs.content
    assert len(content) == lp.usage.completion_tokens and all(len(t.top_logprobs) == 3 for t in content)
    # greedy: each chosen token is the most likely one
    assert all(abs(t.logprob - max(a.logprob for a in t.top_logprobs)) < 1e-5 for t in content)


def test_logprobs_and_echo(client, tokenizer):
    ids = tokenizer.encode(PROMPT)
    r = client.completions.create(model="run", prompt=PROMPT, max_tokens=3, temperature=0, logprobs=2, echo=True)
    lp = r.choices[0].logprobs
    assert r.choices[0].text.startswith(PROMPT)
    assert len(lp.tokens) == len(ids) + 3 and lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(x <= 0 for x in lp.token_logprobs[1:]) and all(len(t) <= 2 for t in lp.top_logprobs[1:])
    # the generated greedy tokens are each position's top choice
    for chosen, top in zip(lp.token_logprobs[len(ids):], lp.top_logprobs[len(ids):]):
        assert abs(chosen - max(top.values())) < 1e-5
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    score = client.completions.create(model="run", prompt=ids, max_tokens=0, echo=True, logprobs=0)
    assert score.usage.completion_tokens == 0
    assert score.choices[0].logprobs.token_logprobs == pytest.approx(lp.token_logprobs[:len(ids)], abs=1e-5)


def test_penalties_and_top_k_extension(client):
    kw = dict(model="run", prompt=PROMPT, max_tokens=40, temperature=0)
    plain = client.completions.create(**kw).choices[0].text
    pen = client.completions.create(frequency_penalty=2.0, presence_penalty=1.0, **kw).choices[0].text
    rep = client.completions.create(extra_body={"repetition_penalty": 1.8}, **kw).choices[0].text
    assert pen != plain and rep != plain
    k1 = client.completions.create(model="run", prompt=PROMPT, max_tokens=10, temperature=1.0, seed=3,
                                   extra_body={"top_k": 1})
    assert k1.choices[0].text == client.completions.create(**{**kw, "max_tokens": 10}).choices[0].text


def test_errors_have_openai_shape(client, server, trained):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="run", prompt=PROMPT, max_tokens=5, top_p=0)
    assert e.value.status_code == 400 and e.value.body["param"] == "top_p" and "top_p" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="run", prompt=PROMPT, temperature=-1)
    assert "temperature" in e.value.body["message"]
    status, body = post(server, "/v1/completions", {"model": "run", "prompt": PROMPT, "max_tokens": "5"})
    assert status == 400 and body["error"]["param"] == "max_tokens" and "integer" in body["error"]["message"]
    status, body = post(server, "/v1/completions", None, raw=b'{"prompt": "x",')
    assert status == 400 and body["error"]["code"] == "invalid_json"
    long_prompt = "서울 " * 400
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="run", prompt=long_prompt, max_tokens=5)
    msg = e.value.body["message"]
    assert "128" in msg and "tokens" in msg and e.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="gpt-4", prompt=PROMPT)
    assert "gpt-4" in e.value.body["message"] and e.value.body["code"] == "model_not_found"
    bad_key = openai.OpenAI(base_url=server.base + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad_key.completions.create(model="run", prompt=PROMPT)
    assert e.value.status_code == 401 and "API key" in e.value.body["message"]
    status, body = post(server, "/v1/completions", {"prompt": PROMPT}, key=None)
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    status, body = post(server, "/v1/completions", None, raw=json.dumps({"prompt": "가" * 70000}).encode())
    assert status == 413 and "65536" in body["error"]["message"]
    status, body = post(server, "/v1/completions", {"prompt": [5, 99999]})
    assert status == 400 and "99999" in body["error"]["message"]


def test_queue_full_is_429(client, server):
    """48 queued + 16 running slots; 40 requests of n=4 (160 sequences) at once overflow it."""
    def one(_):
        try:
            r = client.completions.create(model="run", prompt=PROMPT, max_tokens=40, n=4,
                                          temperature=1.0, extra_body={"ignore_eos": True})
            return r.usage.completion_tokens
        except openai.RateLimitError as e:
            return e
    with cf.ThreadPoolExecutor(40) as pool:
        results = list(pool.map(one, range(40)))
    errors = [r for r in results if isinstance(r, Exception)]
    assert errors and len(errors) < 40
    assert all(e.status_code == 429 and e.body["code"] == "queue_full" and "queue is full" in e.body["message"]
               for e in errors)
    assert all(r == 160 for r in results if not isinstance(r, Exception))


def test_filters(client, server):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="run", prompt="이 씨발 물건은", max_tokens=5)
    assert "banned_words" in e.value.body["message"] and e.value.body["code"] == "content_filter"


def test_tokenize_detokenize_health_metrics(server, tokenizer):
    status, t = post(server, "/v1/tokenize", {"prompt": "서울의 날씨"})
    assert status == 200 and t["tokens"] == tokenizer.encode("서울의 날씨") and t["count"] == len(t["tokens"])
    assert len(t["token_strs"]) == len(t["tokens"])
    assert "".join(t["pieces"]) == "서울의 날씨"  # the morpheme-aware split, piece by piece
    status, d = post(server, "/detokenize", {"tokens": t["tokens"]})
    assert status == 200 and d["prompt"] == "서울의 날씨"
    health = server.get_json("/health")
    assert health["status"] == "ok"
    with urllib.request.urlopen(server.base + "/metrics") as r:
        text = r.read().decode()
    assert metric(text, "hyperclova_requests_total", 'endpoint="/v1/completions",status="200"') > 0
    assert metric(text, "hyperclova_requests_total", 'endpoint="/v1/completions",status="401"') > 0
    assert metric(text, "hyperclova_generation_tokens_total") > 0
    assert metric(text, "hyperclova_time_to_first_token_seconds_count") > 0
    assert "hyperclova_queue_length" in text and "hyperclova_running_sequences" in text
