"""From an API request to engine sequences and back to OpenAI-shaped responses.

`Server` holds what every request shares (tokenizer, engine, filters, knowledge base, chat
template, limits, metrics). `prepare_completion` / `prepare_chat` validate a request and turn it
into `SeqRequest`s (one per prompt and choice); `complete` submits them and builds the whole
response, `stream` yields OpenAI's chunks as the engine's events arrive.

Besides the base model, tuned adapters (hyperclova.tune) are served under their own names and
chosen per request by the `model` field: a `Variant` says which engine runs the request and how
its prompt is encoded (docs/serve.md: P-tuning adapters share the base model's engine, LoRA and
fully fine-tuned ones get an engine each).
"""
from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Sequence

import torch

from hyperclova.errors import UserError
from hyperclova.generate import Sampling
from hyperclova.serve.batching import BatchEngine, Event, QueueFull, SeqRequest, TokenInfo
from hyperclova.serve.filters import FilterTripped
from hyperclova.serve.protocol import ApiError, ChatRequest, CompletionRequest
from hyperclova.serve.text import TextStream, token_text

# How the API spells the Sampling fields, so a bad value gets a 400 naming the request field.
API_NAMES = {"max_new_tokens": "max_tokens", "temperature": "temperature", "top_k": "top_k",
             "top_p": "top_p", "presence_penalty": "presence_penalty",
             "frequency_penalty": "frequency_penalty", "repetition_penalty": "repetition_penalty"}
MAX_STOP = 16


@dataclass
class Limits:
    max_tokens: int = 1024  # max_tokens is clamped to this
    default_max_tokens: int = 16  # completions without max_tokens (OpenAI's default)
    max_n: int = 8  # n is clamped to this
    max_logprobs: int = 20
    max_body_bytes: int = 1 << 20
    max_retrieve: int = 8


@dataclass
class Variant:
    """A model served under its own name: the base, or an adapter applied to it."""

    name: str
    engine: BatchEngine
    tok: object  # encodes the variant's prompts (P-tuning's reads its virtual-token markers)
    wrap: Callable[[str], str] = lambda text: text  # the prompt as the variant was tuned to read it
    kind: str = "base"  # base | lora | full | ptuning


@dataclass
class Prepared:
    """A validated request: its sequences and what the response needs to say about them."""

    kind: str  # "completion" | "chat"
    body: CompletionRequest | ChatRequest
    seqs: list[SeqRequest]
    prompts: list[list[int]]
    prompt_texts: list[str]
    n: int
    knowledge: list[list[dict]] = field(default_factory=list)
    variant: Variant | None = None  # the model that runs it
    events: asyncio.Queue | None = None  # (sequence index, Event), filled once submitted
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:24])
    created: int = field(default_factory=lambda: int(time.time()))


class Server:
    def __init__(self, tok, engine: BatchEngine, model_name: str, limits: Limits, filters=None,
                 knowledge=None, chat=None, metrics=None, api_keys: tuple[str, ...] = (),
                 adapters: Sequence[Variant] = ()):
        self.tok, self.engine, self.model_name, self.limits = tok, engine, model_name, limits
        self.filters, self.knowledge, self.chat, self.metrics = filters, knowledge, chat, metrics
        self.api_keys = api_keys
        self.max_len = engine.max_len
        self.base = Variant(model_name, engine, tok)
        self.variants = {v.name: v for v in (self.base, *adapters)}

    def engines(self) -> list[BatchEngine]:
        return list({id(v.engine): v.engine for v in self.variants.values()}.values())

    # -- validation -----------------------------------------------------------------------------
    def check_model(self, name: str | None) -> Variant:
        """The variant a request's `model` names (the base when it names none)."""
        if name is None:
            return self.base
        if name not in self.variants:
            served = ", ".join(f"'{n}'" for n in self.variants)
            raise ApiError(404, f"The model '{name}' does not exist; this server serves {served}",
                           "model", "model_not_found")
        return self.variants[name]

    def _prompt_ids(self, prompt, retrieve: int, retrieve_tokens: int,
                    v: Variant | None = None) -> tuple[list[int], str, list[dict]]:
        """(ids, text, knowledge used) of one completion prompt given as text or as token ids."""
        if isinstance(prompt, str):
            text = self._filter_input(prompt)
            used: list[dict] = []
            if retrieve:
                block, used = self._knowledge_block(text, retrieve, retrieve_tokens)
                text = block + text
            return self._encode(text, v), text, used
        bad = [t for t in prompt if not 0 <= t < self.tok.vocab_size]
        if bad:
            raise ApiError(400, f"token id {bad[0]} is outside the vocabulary [0, {self.tok.vocab_size})", "prompt")
        text = self.tok.decode(prompt)
        filtered = self._filter_input(text)
        # Passages, masking or an adapter's template change the text: encode it anew.
        if retrieve or filtered != text or (v is not None and v.kind == "ptuning"):
            return self._prompt_ids(filtered, retrieve, retrieve_tokens, v)
        return self._check_length(list(prompt) or [self.tok.eod_id]), text, []

    def _knowledge_block(self, query: str, k: int, budget: int) -> tuple[str, list[dict]]:
        return self.knowledge.block(query, min(k, self.limits.max_retrieve), budget,
                                    lambda s: len(self.tok.encode(s)))

    def _encode(self, text: str, v: Variant | None = None) -> list[int]:
        v = v or self.base
        return self._check_length(v.tok.encode(v.wrap(text)) if text else [self.tok.eod_id])

    def _check_length(self, ids: list[int]) -> list[int]:
        if len(ids) >= self.max_len:
            raise ApiError(400, f"This model's maximum context length is {self.max_len} tokens; the "
                                f"prompt has {len(ids)} tokens (at least one must be left to generate)",
                           "prompt", "context_length_exceeded")
        return ids

    def _filter_input(self, text: str) -> str:
        if self.filters is None:
            return text
        try:
            return self.filters.check_input(text)
        except FilterTripped as e:
            raise ApiError(400, str(e), "prompt", "content_filter") from None

    def _sampling(self, body, max_tokens: int | None, default_max: int) -> Sampling:
        if max_tokens is None:
            max_tokens = default_max
        if body.top_k < -1:
            raise ApiError(400, f"top_k must be -1 or 0 (off) or more, got {body.top_k}", "top_k")
        if body.logit_bias:
            raise ApiError(400, "logit_bias is not supported by this server", "logit_bias")
        s = Sampling.for_tokenizer(
            self.tok, max_new_tokens=max_tokens, temperature=body.temperature, top_k=max(body.top_k, 0),
            top_p=body.top_p, presence_penalty=body.presence_penalty,
            frequency_penalty=body.frequency_penalty, repetition_penalty=body.repetition_penalty)
        if body.ignore_eos:
            s.suppress_ids, s.eod_id = tuple(sorted({*s.suppress_ids, self.tok.eod_id})), None
        try:
            s.check(API_NAMES)
        except UserError as e:
            field_name = str(e).split(" ", 1)[0]
            raise ApiError(400, str(e), field_name) from None
        s.max_new_tokens = min(s.max_new_tokens, self.limits.max_tokens)
        return s

    def _stops(self, stop) -> list[str]:
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if len(stops) > MAX_STOP:
            raise ApiError(400, f"stop has {len(stops)} sequences; at most {MAX_STOP}", "stop")
        return stops

    def _check_common(self, body) -> int:
        if body.n < 1:
            raise ApiError(400, f"n must be at least 1, got {body.n}", "n")
        if body.seed is not None and not 0 <= body.seed < 2**63 - 1024:
            raise ApiError(400, f"seed must be in [0, 2**63 - 1024), got {body.seed}", "seed")
        if body.retrieve < 0 or body.retrieve_tokens < 1:
            raise ApiError(400, "retrieve must be 0 or more and retrieve_tokens at least 1", "retrieve")
        if body.retrieve and self.knowledge is None:
            raise ApiError(400, "retrieve needs a knowledge base: start the server with --knowledge PATH",
                           "retrieve")
        return min(body.n, self.limits.max_n)

    def prepare_completion(self, body: CompletionRequest) -> Prepared:
        v = self.check_model(body.model)
        n = self._check_common(body)
        if v.kind == "ptuning" and body.echo and body.logprobs is not None:
            raise ApiError(400, f"'{v.name}' is a P-tuning adapter: its prompts hold virtual "
                                "tokens that have no log-probability; echo with logprobs is not "
                                "available for it", "logprobs")
        if body.suffix:
            raise ApiError(400, "suffix is not supported by this server", "suffix")
        if body.best_of is not None and body.best_of != body.n:
            raise ApiError(400, "best_of other than n is not supported by this server", "best_of")
        if body.logprobs is not None and not 0 <= body.logprobs <= self.limits.max_logprobs:
            raise ApiError(400, f"logprobs must be in [0, {self.limits.max_logprobs}], got {body.logprobs}",
                           "logprobs")
        if body.max_tokens is not None and body.max_tokens == 0 and not body.echo:
            raise ApiError(400, "max_tokens 0 only makes sense with echo (scoring the prompt)", "max_tokens")
        p = body.prompt
        prompts = [p] if isinstance(p, str) or (p and isinstance(p[0], int)) else list(p)
        if not prompts:
            raise ApiError(400, "prompt must not be an empty list", "prompt")
        sampling = self._sampling(body, body.max_tokens, self.limits.default_max_tokens)
        stops = self._stops(body.stop)
        ids, texts, used = zip(*(self._prompt_ids(q, body.retrieve, body.retrieve_tokens, v)
                                 for q in prompts))
        prompt_lp = body.logprobs if body.echo and body.logprobs is not None else None
        return self._prepared("completion", body, list(ids), list(texts), list(used), n, sampling,
                              stops, body.logprobs, prompt_lp, v)

    def prepare_chat(self, body: ChatRequest) -> Prepared:
        v = self.check_model(body.model)
        n = self._check_common(body)
        top = body.top_logprobs if body.top_logprobs is not None else 0
        if not 0 <= top <= self.limits.max_logprobs:
            raise ApiError(400, f"top_logprobs must be in [0, {self.limits.max_logprobs}], got {top}",
                           "top_logprobs")
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        sampling = self._sampling(body, max_tokens, self.limits.max_tokens)
        stops = self._stops(body.stop) + list(self.chat.stop)
        messages = [m.model_dump(exclude_none=True) for m in body.messages]
        try:
            prompt = self.chat.render(messages)
        except ValueError as e:
            raise ApiError(400, str(e), "messages") from None
        query = next((m["content"] for m in reversed(messages) if m["role"] == "user"), prompt)
        text, used = self._filter_input(prompt), []
        if body.retrieve:
            block, used = self._knowledge_block(query, body.retrieve, body.retrieve_tokens)
            text = block + text
        ids = self._encode(text, v)
        return self._prepared("chat", body, [ids], [text], [used], n, sampling, stops,
                              top if body.logprobs else None, None, v)

    def _prepared(self, kind, body, prompts, texts, used, n, sampling, stops, logprobs, prompt_lp,
                  variant: Variant | None = None) -> Prepared:
        seqs = []
        for i, ids in enumerate(prompts):
            for c in range(n):
                g = torch.Generator()
                seed = body.seed + i * n + c if body.seed is not None else int.from_bytes(os.urandom(7), "big")
                g.manual_seed(seed)
                seqs.append(SeqRequest(prompt=ids, sampling=sampling, emit=lambda ev: None,
                                       stream=TextStream(self.tok, stops, self.filters), generator=g,
                                       logprobs=logprobs, prompt_logprobs=prompt_lp))
        return Prepared(kind, body, seqs, prompts, texts, n, used, variant or self.base)

    # -- running --------------------------------------------------------------------------------
    def submit(self, prep: Prepared) -> None:
        """Queue the request's sequences now (a full queue is a 429 before any response starts);
        their events collect in `prep.events` until `events` reads them."""
        queue: asyncio.Queue = asyncio.Queue()
        for i, s in enumerate(prep.seqs):  # called on this event loop (BatchEngine.serve_forever)
            s.emit = lambda ev, i=i: queue.put_nowait((i, ev))
        engine = prep.variant.engine
        try:
            engine.submit(prep.seqs)
        except QueueFull as e:
            raise ApiError(429, str(e), None, "queue_full") from None
        prep.events = queue
        if self.metrics:
            self.metrics.prompt_tokens.inc(sum(len(p) for p in prep.prompts))

    async def events(self, prep: Prepared) -> AsyncIterator[tuple[int, Event]]:
        """Yield (sequence index, event) of a submitted request until all its sequences have
        finished; they are cancelled if the consumer stops early (client gone)."""
        open_ = len(prep.seqs)
        last_time = [None] * open_
        try:
            while open_:
                i, ev = await prep.events.get()
                self._observe(prep.seqs[i], ev, last_time, i)
                if ev.finish_reason is not None:
                    open_ -= 1
                yield i, ev
        finally:
            if open_:
                prep.variant.engine.cancel(prep.seqs)

    def _observe(self, s: SeqRequest, ev: Event, last_time: list, i: int) -> None:
        m = self.metrics
        if m is None:
            return
        if ev.tokens:
            m.generation_tokens.inc(len(ev.tokens))
            if last_time[i] is None:
                m.ttft.observe(ev.time - s.arrival)
            else:
                m.itl.observe(ev.time - last_time[i])
            last_time[i] = ev.time
        if ev.finish_reason is not None:
            m.sequences.labels(ev.finish_reason).inc()
            m.latency.observe(ev.time - s.arrival)

    # -- responses ------------------------------------------------------------------------------
    def _usage(self, prep: Prepared, generated: int) -> dict:
        p = sum(len(ids) for ids in prep.prompts)
        return {"prompt_tokens": p, "completion_tokens": generated, "total_tokens": p + generated}

    def completion_logprobs(self, infos: list[TokenInfo], offset0: int) -> dict:
        tokens, lps, tops, offsets, off = [], [], [], [], offset0
        for t in infos:
            s = token_text(self.tok, t.id)
            tokens.append(s)
            lps.append(t.logprob)
            tops.append(None if t.logprob is None else {token_text(self.tok, i): v for i, v in t.top})
            offsets.append(off)
            off += len(s)
        return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}

    def chat_logprobs(self, infos: list[TokenInfo]) -> dict:
        def entry(tid: int, lp: float) -> dict:
            b = self.tok.id_to_bytes(tid)
            return {"token": b.decode("utf-8", errors="replace"), "logprob": lp, "bytes": list(b)}

        return {"content": [entry(t.id, t.logprob) | {"top_logprobs": [entry(i, v) for i, v in t.top]}
                            for t in infos]}

    def _extras(self, s: SeqRequest) -> dict:
        out = {}
        if s.stream.filter_counts:
            out["content_filter_results"] = dict(s.stream.filter_counts)
        return out

    async def complete(self, prep: Prepared) -> dict:
        """The whole (non-streaming) response."""
        n_seq = len(prep.seqs)
        texts = [""] * n_seq
        infos: list[list[TokenInfo]] = [[] for _ in range(n_seq)]
        prompt_infos: list[list[TokenInfo]] = [[] for _ in range(n_seq)]
        reasons: list[str | None] = [None] * n_seq
        async for i, ev in self.events(prep):
            if ev.error:
                raise ApiError(500, f"generation failed: {ev.error}", None, "engine_error")
            texts[i] += ev.text
            infos[i] += ev.tokens
            prompt_infos[i] += ev.prompt or []
            reasons[i] = ev.finish_reason or reasons[i]
        generated = sum(len(x) for x in infos)
        choices = []
        for i, s in enumerate(prep.seqs):
            p = i // prep.n
            if prep.kind == "completion":
                body: CompletionRequest = prep.body  # type: ignore[assignment]
                prefix = prep.prompt_texts[p] if body.echo else ""
                lp = None
                if body.logprobs is not None:
                    lp = self.completion_logprobs((prompt_infos[i] if body.echo else []) + infos[i], 0)
                choices.append({"index": i, "text": prefix + texts[i], "logprobs": lp,
                                "finish_reason": reasons[i], **self._extras(s)})
            else:
                lp = self.chat_logprobs(infos[i]) if prep.body.logprobs else None
                choices.append({"index": i, "message": {"role": "assistant", "content": texts[i]},
                                "logprobs": lp, "finish_reason": reasons[i], **self._extras(s)})
        out = {"id": ("cmpl-" if prep.kind == "completion" else "chatcmpl-") + prep.id,
               "object": "text_completion" if prep.kind == "completion" else "chat.completion",
               "created": prep.created, "model": prep.variant.name, "choices": choices,
               "usage": self._usage(prep, generated)}
        if any(prep.knowledge):
            out["knowledge"] = self._knowledge(prep)
        return out

    async def stream(self, prep: Prepared) -> AsyncIterator[dict]:
        """OpenAI streaming chunks (the route frames them as server-sent events)."""
        chat, body = prep.kind == "chat", prep.body
        head = {"id": ("chatcmpl-" if chat else "cmpl-") + prep.id,
                "object": "chat.completion.chunk" if chat else "text_completion",
                "created": prep.created, "model": prep.variant.name}
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        wants_lp = bool(body.logprobs) if chat else body.logprobs is not None
        once = {"knowledge": self._knowledge(prep)} if any(prep.knowledge) else {}
        generated, open_ = 0, len(prep.seqs)
        started = [False] * open_
        offsets = [0] * open_  # text_offset of each choice's next token
        prompt_infos: list[list[TokenInfo]] = [[] for _ in range(open_)]
        async for i, ev in self.events(prep):
            if ev.error:
                err = ApiError(500, f"generation failed: {ev.error}", None, "engine_error")
                yield err.body()
                return
            if ev.prompt is not None:  # echo with logprobs: sent with the choice's first chunk
                prompt_infos[i] = ev.prompt
                continue
            generated += len(ev.tokens)
            text, infos = ev.text, ev.tokens
            if not started[i] and not chat and body.echo:
                text, infos = prep.prompt_texts[i // prep.n] + text, prompt_infos[i] + infos
            if ev.finish_reason is not None:
                open_ -= 1
            if not text and ev.finish_reason is None and not (wants_lp and infos) \
                    and (started[i] or not chat):
                continue  # nothing to say yet (text held back, no logprobs asked)
            choice: dict = {"index": i}
            if chat:
                choice["delta"] = ({"role": "assistant"} if not started[i] else {}) | (
                    {"content": text} if text or not started[i] else {})
                choice["logprobs"] = self.chat_logprobs(infos) if wants_lp and infos else None
            else:
                choice["text"] = text
                choice["logprobs"] = None
                if wants_lp and infos:
                    lp = choice["logprobs"] = self.completion_logprobs(infos, offsets[i])
                    offsets[i] = lp["text_offset"][-1] + len(lp["tokens"][-1])
            choice["finish_reason"] = ev.finish_reason
            if ev.finish_reason is not None:
                choice.update(self._extras(prep.seqs[i]))
            started[i] = True
            chunk = head | once | {"choices": [choice]}
            once = {}
            if open_ == 0 and not include_usage:
                chunk["usage"] = self._usage(prep, generated)
            yield chunk
        if include_usage:
            yield head | {"choices": [], "usage": self._usage(prep, generated)}

    def _knowledge(self, prep: Prepared):
        return prep.knowledge if len(prep.knowledge) > 1 else prep.knowledge[0]
