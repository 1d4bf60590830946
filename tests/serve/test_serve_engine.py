"""The batching engine in-process, on its edge paths: requests joining a running batch at
different times, prompts prefilled in chunks, the column timeline shifting left, the static
baseline: every greedy sequence equals `generate` on its own. The engine runs as the server
runs it, `serve_forever` on an event loop."""
from __future__ import annotations

import asyncio

import pytest
import torch

from hyperclova.generate import Sampling, generate, load_model
from hyperclova.serve import batching
from hyperclova.serve.batching import BatchEngine, SeqRequest
from hyperclova.serve.text import TextStream

PROMPTS = ["오늘 서울의 날씨는", "정부는", "이 제품을 사용해 보니 생각보다 훨씬 좋아서 가족들에게도",
           "맛집", "경제 전문가들은 내년 성장률이", "질문: 주말에 가볼 만한 곳", "부산", "리뷰"]


@pytest.fixture(scope="module")
def model(trained):
    return load_model(trained.checkpoint)[0]


def drive(engine: BatchEngine, client) -> None:
    """Run the engine on an event loop while the coroutine `client` submits to it."""
    async def main():
        task = asyncio.create_task(engine.serve_forever())
        try:
            await asyncio.wait_for(client, 120)
        finally:
            engine.close()
            await task
    asyncio.run(main())


def run_engine(model, tok, prompts, max_new, **engine_kw):
    """Submit prompts one after another while the engine runs; return each one's tokens."""
    engine = BatchEngine(model, tok.vocab_size, **engine_kw)
    results = [[] for _ in prompts]

    async def client():
        done = [asyncio.Event() for _ in prompts]

        def emit(i):
            def f(ev):
                results[i].extend(t.id for t in ev.tokens)
                if ev.finish_reason:
                    done[i].set()
            return f

        for i, p in enumerate(prompts):
            s = Sampling.for_tokenizer(tok, max_new_tokens=max_new[i], temperature=0)
            engine.submit([SeqRequest(tok.encode(p), s, emit(i), TextStream(tok))])
            await done[max(0, i - 2)].wait()  # later prompts join a batch that is already decoding
        for d in done:
            await d.wait()

    drive(engine, client())
    return results, engine


def expected(model, tok, prompts, max_new, max_len):
    out = []
    for p, m in zip(prompts, max_new):
        ids = tok.encode(p)
        s = Sampling.for_tokenizer(tok, max_new_tokens=min(m, max_len - len(ids)), temperature=0)
        out.append(generate(model, [ids], s)[0])
    return out


@pytest.mark.parametrize("case", ["continuous", "chunked_prefill_and_shifts", "static"])
def test_engine_matches_generate(model, tokenizer, monkeypatch, case):
    max_new = [30, 5, 60, 12, 40, 25, 1, 50]
    kw = dict(max_batch=4, max_queue=16)
    if case == "chunked_prefill_and_shifts":
        # 5-token prefill chunks; a 40-column context makes the timeline shift every 40 steps
        monkeypatch.setattr(batching, "PREFILL_LOGIT_FLOATS", 5 * model.cfg.vocab_size)
        kw.update(max_len=40, prefill_tokens=8)
    if case == "static":
        kw.update(policy="static", static_wait_s=0.01)
    got, engine = run_engine(model, tokenizer, PROMPTS, max_new, **kw)
    want = expected(model, tokenizer, PROMPTS, max_new, engine.max_len)
    assert got == want
    assert engine.peak_batch >= 2
    if case == "chunked_prefill_and_shifts":
        assert engine.shifts >= 1


def test_seeded_sampling_is_batch_independent(model, tokenizer):
    def one(extra):
        engine = BatchEngine(model, tokenizer.vocab_size, max_batch=8)
        out = {i: [] for i in range(1 + len(extra))}

        async def client():
            done = {i: asyncio.Event() for i in out}
            reqs = []
            for i, p in enumerate(["오늘 서울의", *extra]):
                s = Sampling.for_tokenizer(tokenizer, max_new_tokens=20, temperature=1.0, top_p=0.9,
                                           presence_penalty=0.5)

                def emit(ev, i=i):
                    out[i].extend(t.id for t in ev.tokens)
                    if ev.finish_reason:
                        done[i].set()
                reqs.append(SeqRequest(tokenizer.encode(p), s, emit, TextStream(tokenizer),
                                       generator=torch.Generator().manual_seed(42 + i * (i > 0))))
            engine.submit(reqs)
            for d in done.values():
                await d.wait()

        drive(engine, client())
        return out[0]

    assert one([]) == one(["정부는 이번", "맛집 후기 올립니다", "부산"])


def test_shutdown_answers_running_and_queued_sequences(model, tokenizer):
    """close() while sequences run and wait: each gets a final error event, none hangs."""
    engine = BatchEngine(model, tokenizer.vocab_size, max_batch=2)
    finals = []

    async def client():
        s = Sampling.for_tokenizer(tokenizer, max_new_tokens=100, temperature=0)
        engine.submit([SeqRequest(tokenizer.encode("오늘"), s,
                                  lambda ev: ev.finish_reason and finals.append(ev), TextStream(tokenizer))
                       for _ in range(5)])
        while engine.iterations < 3:
            await asyncio.sleep(0.01)
        engine.close()

    drive(engine, client())
    assert len(finals) == 5 and all(ev.finish_reason == "error" and "shutting down" in ev.error
                                    for ev in finals)
    assert engine.batch_size == 0 and engine.queue_length == 0


def test_a_reader_that_stops_early_cancels_its_sequences(model, tokenizer):
    """Server.events: a consumer that goes away (client gone) cancels the request's sequences on
    the engine that runs them, and they leave the batch."""
    from hyperclova.serve.protocol import CompletionRequest
    from hyperclova.serve.server import Limits, Server

    engine = BatchEngine(model, tokenizer.vocab_size, max_batch=4)
    server = Server(tokenizer, engine, "m", Limits())

    async def client():
        prep = server.prepare_completion(CompletionRequest.model_validate(
            {"prompt": "오늘 서울의", "max_tokens": 80, "n": 2, "temperature": 0, "ignore_eos": True}))
        server.submit(prep)
        events = server.events(prep)
        await events.__anext__()
        await events.aclose()  # what the route's generator does when the client disconnects
        assert all(s.cancelled for s in prep.seqs)
        while engine.batch_size:
            await asyncio.sleep(0.01)

    drive(engine, client())
    assert engine.cancelled == 2 and engine.batch_size == 0
