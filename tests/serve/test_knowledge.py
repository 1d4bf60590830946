"""Knowledge injection: documents read through the project's reader, BM25 over MeCab-ko morphemes,
the best passages put before the prompt within a token budget and listed in the response."""
from __future__ import annotations

import requests

from serve_helpers import API_KEY


def post(server, path, body):
    r = requests.post(server.base + path, json=body, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
    return r.status_code, r.json()


def test_knowledge_base_reads_jsonl_and_text_and_ranks_by_morphemes(knowledge_files):
    from hyperclova.serve.knowledge import KnowledgeBase

    kb, summary = KnowledgeBase.from_paths([str(knowledge_files)])
    # 3 JSONL records with text + 2 text lines; the record without "text" is counted, not lost
    assert len(kb.passages) == 5 and "skipped 1" in summary and "facts.jsonl:3" in summary
    top, score = kb.search("서울의 지하철 노선", 1)[0]
    assert "지하철" in top.text and top.source.endswith("more.txt:1") and score > 0
    # "하늘전자의" is matched through its morpheme "하늘전자"
    assert "하늘전자" in kb.search("하늘전자의 대표 제품", 1)[0][0].text
    assert kb.search("전혀 관계없는 단어", 3) == [] or all(s > 0 for _, s in kb.search("전혀 관계없는 단어", 3))


def test_retrieve_injects_passages_and_lists_them(server):
    q = "하늘전자의 대표 제품은"
    status, plain = post(server, "/v1/completions", {"prompt": q, "max_tokens": 4, "temperature": 0})
    assert status == 200 and "knowledge" not in plain
    status, r = post(server, "/v1/completions", {"prompt": q, "max_tokens": 4, "temperature": 0,
                                                 "retrieve": 2, "echo": True})
    assert status == 200
    used = r["knowledge"]
    assert used and used[0]["source"].endswith("facts.jsonl:1") and "하늘전자" in used[0]["text"]
    assert r["choices"][0]["text"].startswith("참고 자료:\n- " + used[0]["text"])
    assert q in r["choices"][0]["text"] and r["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"]
    status, tight = post(server, "/v1/completions", {"prompt": q, "max_tokens": 4, "retrieve": 2,
                                                     "retrieve_tokens": 3})
    assert status == 200 and "knowledge" not in tight  # nothing fits a 3-token budget
    status, chat = post(server, "/v1/chat/completions", {"messages": [{"role": "user", "content": "누리 트럭은?"}],
                                                         "max_tokens": 4, "retrieve": 1})
    assert status == 200 and "미래자동차" in chat["knowledge"][0]["text"]
    status, err = post(server, "/v1/completions", {"prompt": q, "retrieve": -1})
    assert status == 400 and err["error"]["param"] == "retrieve"
