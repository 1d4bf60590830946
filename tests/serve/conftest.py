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


@pytest.fixture(scope="session")
def server(trained, tmp_path_factory):
    """Default filters (the corpus Korean banned-word list, PII masking), the API key from the
    environment variable, 16 slots and a queue of 48 sequences."""
    log = tmp_path_factory.mktemp("serve_log") / "server.log"
    srv = ServerProcess(["--checkpoint", str(trained.checkpoint), "--max-batch", "16",
                         "--max-queue", "48", "--max-tokens", "96", "--max-n", "4",
                         "--max-body-bytes", "65536"],
                        env={"HYPERCLOVA_API_KEY": API_KEY}, log_path=log)
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


@pytest.fixture
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=60)
