"""One server, several tuned adapters, one chosen per request by the `model` field (real server,
official openai client): a LoRA adapter (merged into its own copy of the base) and a P-tuning
adapter (its stored prompts sharing the base model's engine) answer as the same adapters loaded
in this process do, also when their requests share a batch with the base model's."""
from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from serve_helpers import ServerProcess  # noqa: E402

PROMPTS = ["이 영화 정말", "오늘 서울의 날씨는"]


@pytest.fixture(scope="module")
def server(base, lora_run, ptuning_run, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve_adapters") / "server.log"
    srv = ServerProcess(["--checkpoint", str(base), "--adapter", f"lora={lora_run[2]}",
                         "--adapter", f"pt={ptuning_run[2]}", "--filter-config", "none",
                         "--served-model-name", "base", "--max-batch", "8"], log_path=log)
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


def expected(path, prompt: str) -> str:
    """Greedy text of the adapter loaded in this process (None: the base)."""
    from hyperclova.generate import Sampling, generate, load_model
    from hyperclova.tokenizer import load_tokenizer
    from hyperclova.tune.adapters import adapter_tokenizer, open_adapter, wrap_prompt
    from hyperclova.tune.lora import merge_lora_

    if path is None:
        model, cfg = load_model(expected.base)
        ids = load_tokenizer(cfg.data.tokenizer).encode(prompt)
    else:
        ad = open_adapter(path)
        model, cfg = load_model(None, adapter=ad)
        merge_lora_(model)  # as served (a no-op for P-tuning)
        ids = adapter_tokenizer(ad.cfg, load_tokenizer(cfg.data.tokenizer)).encode(wrap_prompt(ad.cfg, prompt))
    tok = load_tokenizer(cfg.data.tokenizer)
    out = generate(model, [ids], Sampling.for_tokenizer(tok, max_new_tokens=8, temperature=0.0))[0]
    return tok.decode([i for i in out if i != tok.eod_id])


def test_requests_choose_their_adapter(server, base, lora_run, ptuning_run):
    from openai import NotFoundError, OpenAI

    expected.base = base
    client = OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0, timeout=60)
    models = {m.id: m for m in client.models.list().data}
    assert set(models) == {"base", "lora", "pt"}
    studio = server.get_json("/studio/config")["models"]  # the playground's model chooser
    assert studio == [{"id": "base", "kind": "base"}, {"id": "lora", "kind": "lora"},
                      {"id": "pt", "kind": "ptuning"}]
    cases = [(name, p) for name in (None, "lora", "pt") for p in PROMPTS]

    def complete(case):
        name, prompt = case
        r = client.completions.create(model=name or "base", prompt=prompt, max_tokens=8,
                                      temperature=0)
        return r.model, r.choices[0].text

    with ThreadPoolExecutor(len(cases)) as pool:  # base and adapter rows share batches
        answers = list(pool.map(complete, cases))
    paths = {None: None, "lora": lora_run[2], "pt": ptuning_run[2]}
    for (name, prompt), (model, text) in zip(cases, answers):
        assert model == (name or "base")
        assert text == expected(paths[name], prompt), (name, prompt)
    health = server.get_json("/health")  # totals over both engines (base + P-tuning, LoRA)
    assert health["engines"] == 2 and health["running"] == 0 and health["peak_batch"] >= 2
    by = {case: text for case, (_, text) in zip(cases, answers)}
    assert all(by["pt", p] != by[None, p] and by["lora", p] != by[None, p] for p in PROMPTS)
    with pytest.raises(NotFoundError, match="this server serves 'base', 'lora', 'pt'"):
        client.completions.create(model="nope", prompt="안녕", max_tokens=2)
