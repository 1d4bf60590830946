"""Session fixtures for the serving tests: one trained model and one live server shared by all
(the load test and the browser test use the same server; each test leaves it idle)."""
from __future__ import annotations

import pytest

from serve_helpers import API_KEY, ServerProcess, train_small_model


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    return train_small_model(tmp_path_factory.mktemp("serve_model"))


@pytest.fixture(scope="session")
def tokenizer(trained):
    from hyperclova.tokenizer import load_tokenizer

    return load_tokenizer(trained.tokenizer)


KNOWLEDGE_JSONL = [
    {"text": "하늘전자는 1998년 수원에서 설립된 가전 회사이다. 대표 제품은 무선 청소기 바람이다.", "id": "a"},
    {"text": "바다건설은 부산에 본사를 둔 건설사로 해상 다리 공사를 맡았다.", "id": "b"},
    {"id": "no text here"},
    {"text": "미래자동차는 전기 트럭 누리를 출시했다. 누리는 한 번 충전으로 오백 킬로미터를 달린다."},
]
KNOWLEDGE_TXT = "서울의 지하철은 아홉 개 노선이 있다.\n제주도는 한국에서 가장 큰 섬이다.\n"


@pytest.fixture(scope="session")
def knowledge_files(tmp_path_factory):
    import json

    root = tmp_path_factory.mktemp("knowledge")
    (root / "facts.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in KNOWLEDGE_JSONL),
                                      encoding="utf-8")
    (root / "more.txt").write_text(KNOWLEDGE_TXT, encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def server(trained, knowledge_files, tmp_path_factory):
    """Default filters (the corpus Korean banned-word list, PII masking), the API key from the
    environment variable, 16 slots and a queue of 48 sequences, a small knowledge base."""
    log = tmp_path_factory.mktemp("serve_log") / "server.log"
    srv = ServerProcess(["--checkpoint", str(trained.checkpoint), "--max-batch", "16",
                         "--max-queue", "48", "--max-tokens", "96", "--max-n", "4",
                         "--max-body-bytes", "65536", "--knowledge", str(knowledge_files)],
                        env={"HYPERCLOVA_API_KEY": API_KEY}, log_path=log)
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


@pytest.fixture
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=60)
