"""`python -m hyperclova.serve` on a `to-hf` export, as a user serves a converted model: start-up
prints the playground and API URLs, the export answers as the training checkpoint does (greedy),
and `--max-tokens` / `--max-n` clamp what a request asks for."""
from __future__ import annotations

from serve_helpers import API_KEY, ServerProcess

PROMPT = "오늘 서울의 날씨는"


def test_serves_an_hf_export_and_clamps_requests(trained, server, tmp_path):
    from openai import OpenAI

    from hyperclova.convert.to_hf import to_hf

    to_hf(trained.checkpoint, tmp_path / "hf", tokenizer_dir=trained.tokenizer)
    srv = ServerProcess(["--checkpoint", str(tmp_path / "hf"), "--served-model-name", "exported",
                         "--max-tokens", "6", "--max-n", "2", "--filter-config", "none"],
                        log_path=tmp_path / "server.log")
    try:
        srv.wait_ready()
        log = srv.log()
        assert f"Studio playground: {srv.base}/" in log and f"OpenAI-compatible API: {srv.base}/v1" in log
        client = OpenAI(base_url=srv.base + "/v1", api_key="unused", max_retries=0, timeout=60)
        r = client.completions.create(model="exported", prompt=PROMPT, max_tokens=50, n=5,
                                      temperature=1.0, seed=3, extra_body={"ignore_eos": True})
        assert len(r.choices) == 2 and r.usage.completion_tokens == 2 * 6
        assert all(c.finish_reason == "length" for c in r.choices)
        exported = client.completions.create(model="exported", prompt=PROMPT, max_tokens=6, temperature=0)
    finally:
        srv.stop()
    trained_client = OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=60)
    # (the session server filters its output; this prompt's greedy text has nothing to filter)
    original = trained_client.completions.create(model="run", prompt=PROMPT, max_tokens=6, temperature=0)
    assert exported.choices[0].text == original.choices[0].text
