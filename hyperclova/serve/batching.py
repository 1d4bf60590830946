"""The continuous-batching engine: one driver owns the model and schedules every iteration, a task
on the server's event loop (`serve_forever`; one per engine when adapters have engines of their
own, docs/serve.md). Requests are submitted and cancelled on that loop, so nothing is locked.

Iteration-level scheduling (Orca, vLLM): at each iteration the engine admits queued requests
while there are free sequence slots, prefills them (prompt through the model into their KV slots,
first token sampled), and runs one decode step for every running sequence, the new ones included.
A sequence that finishes or whose client went away leaves the batch at once and its slot is
reused at the next iteration. `policy="static"` is the baseline of docs/benchmarks.md: it admits
only into an empty batch (waiting briefly for it to fill) and decodes that batch to its end.

KV slots. The model's cache (`hyperclova.model.gpt.KVCache`) writes the same column for every
row, so the engine keeps one column timeline for all slots: the decode step writes every running
sequence's new token at column `cur`; a sequence that joins has its prompt placed so that it ends
at column `cur`. Each sequence keeps its own position ids, and a mask hides the columns before its
start, so a sequence computes the same thing alone or next to others. Running sequences occupy
slots 0..B-1 (a leaving sequence's slot is filled by the last one), so attention reads plain views
of the cache. The timeline has room for 2 x max_len columns; when `cur` reaches the end, every
sequence (each shorter than max_len) is shifted left in one copy.

Sampling is `hyperclova.generate`'s: `adjust_logits` + `pick_tokens`, with each sequence's own
`Sampling` and its own generator (one uniform number per sampled token), so a seeded request
gives the same tokens alone or in any batch, and a greedy one the tokens of
`python -m hyperclova.generate --greedy`.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from hyperclova.generate import (Sampling, adjust_logits, causal_padding_mask, pick_tokens,
                                 token_logprobs)
from hyperclova.model.gpt import GPT, KVCache
from hyperclova.serve.text import TextStream

log = logging.getLogger("hyperclova.serve")

# Prefill computes logits for every prompt position; chunks bound that to about this many floats.
PREFILL_LOGIT_FLOATS = 32 * 1024 * 1024


# Event-loop passes between two iterations when the engine runs on the server's loop.
LOOP_PASSES_PER_STEP = 3


class QueueFull(Exception):
    pass


@dataclass
class TokenInfo:
    id: int
    logprob: float | None = None  # None for the first prompt token (nothing predicts it)
    top: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Event:
    """What a request hears from the engine, in order: prompt logprobs (if asked), then deltas."""

    text: str = ""
    tokens: list[TokenInfo] = field(default_factory=list)
    prompt: list[TokenInfo] | None = None  # prompt token logprobs (echo with logprobs)
    finish_reason: str | None = None  # stop | length | content_filter | error
    error: str | None = None
    time: float = 0.0


@dataclass
class SeqRequest:
    """One sequence to generate (an API request with n choices submits n of them)."""

    prompt: list[int]
    sampling: Sampling
    emit: Callable[[Event], None]
    stream: TextStream
    generator: torch.Generator | None = None
    logprobs: int | None = None  # top-N alternatives to report for each generated token
    prompt_logprobs: int | None = None  # the same for prompt tokens
    cancelled: bool = False
    arrival: float = field(default_factory=time.perf_counter)
    # engine state
    start_col: int = 0
    length: int = 0
    last: int = 0
    generated: int = 0


class KVSlots:
    """Per-sequence KV cache slots on one column timeline (see the module docstring)."""

    def __init__(self, model: GPT, slots: int, max_len: int):
        cfg = model.cfg
        w = model.tok_emb.weight
        self.max_len, self.columns = max_len, 2 * max_len
        shape = (slots, cfg.n_heads, self.columns, cfg.d_head)
        self.k = {key: torch.zeros(shape, dtype=w.dtype, device=w.device) for key in model.layers}
        self.v = {key: torch.zeros(shape, dtype=w.dtype, device=w.device) for key in model.layers}
        self.valid = torch.zeros(slots, self.columns, dtype=torch.bool, device=w.device)
        # Penalty state per slot: counts of generated ids, ids seen in prompt or output.
        self.counts = torch.zeros(slots, cfg.vocab_size, device=w.device)
        self.seen = torch.zeros(slots, cfg.vocab_size, dtype=torch.bool, device=w.device)
        self.cur = max_len  # the next decode column; any prompt (< max_len) fits before it

    def views(self, rows: slice, col0: int) -> dict[str, KVCache]:
        return {key: KVCache(self.k[key][rows, :, col0:], self.v[key][rows, :, col0:]) for key in self.k}

    def move(self, src: int, dst: int, col0: int) -> None:
        for t in (*self.k.values(), *self.v.values()):
            t[dst, :, col0:self.cur] = t[src, :, col0:self.cur]
        for t in (self.valid, self.counts, self.seen):
            t[dst] = t[src]

    def shift_left(self, n_rows: int) -> int:
        """Move every running sequence's columns left so that `cur` is max_len again."""
        shift = self.cur - self.max_len
        for t in (*self.k.values(), *self.v.values()):
            t[:n_rows, :, :self.max_len] = t[:n_rows, :, shift:self.cur].clone()
        self.valid[:n_rows, :self.max_len] = self.valid[:n_rows, shift:self.cur].clone()
        self.valid[:n_rows, self.max_len:] = False
        self.cur = self.max_len
        return shift


class BatchEngine:
    def __init__(self, model: GPT, vocab_limit: int, max_batch: int = 16, max_queue: int = 256,
                 max_len: int | None = None, prefill_tokens: int = 4096, policy: str = "continuous",
                 static_wait_s: float = 0.05):
        if policy not in ("continuous", "static"):
            raise ValueError(f"policy must be 'continuous' or 'static', got {policy!r}")
        self.model = model.eval()
        self.vocab_limit = vocab_limit
        self.max_batch, self.max_queue = max_batch, max_queue
        self.max_len = min(max_len or model.cfg.seq_len, model.cfg.seq_len)
        self.prefill_tokens = prefill_tokens
        self.policy, self.static_wait_s = policy, static_wait_s
        self.device = model.tok_emb.weight.device
        self.slots = KVSlots(model, max_batch, self.max_len)
        self.running: list[SeqRequest] = []
        self._queue: collections.deque[SeqRequest] = collections.deque()
        self._closing = False
        self.iterations = 0
        self.cancelled = 0  # sequences dropped because their client went away
        self.peak_batch = 0  # the largest decode batch so far
        self.shifts = 0  # times the column timeline was shifted left
        self._masks: dict = {}  # banned-id masks by rule (hyperclova.generate.adjust_logits)
        self._outbox: list[tuple[SeqRequest, Event]] = []
        self._wakeup = asyncio.Event()  # a submit, a cancel or close wakes serve_forever

    # -- what requests see ----------------------------------------------------------------------
    @property
    def queue_length(self) -> int:
        return len(self._queue)

    @property
    def batch_size(self) -> int:
        return len(self.running)

    def submit(self, seqs: list[SeqRequest]) -> None:
        """Queue the sequences of one request together, or raise QueueFull for all of them."""
        if self._closing:
            raise QueueFull("the server is shutting down")
        if len(self._queue) + len(seqs) > self.max_queue:
            raise QueueFull(f"the queue is full ({self.max_queue} waiting sequences); retry later")
        self._queue.extend(seqs)
        self._wakeup.set()

    def cancel(self, seqs: list[SeqRequest]) -> None:
        """The client went away: the sequences leave at the next iteration."""
        for s in seqs:
            s.cancelled = True
        self._wakeup.set()

    def close(self) -> None:
        """Stop `serve_forever` after its iteration; sequences still queued or running end with
        finish_reason "error" (their clients get an answer, not a hang)."""
        self._closing = True
        self._wakeup.set()

    async def serve_forever(self) -> None:
        """Run iterations on the calling event loop (the server's). One thread does the model and
        the HTTP work, an iteration at a time, so the two never fight over the GIL: a separate
        engine thread spent much of its time waiting to get it back after each torch op while the
        loop streamed to many clients. Several engines (adapters) on one loop take turns, an
        iteration each, with the HTTP work in between."""
        while not self._closing:
            wait = self.step()
            if wait == 0:
                # Let the loop send what was produced and move requests along: a new request
                # needs a few passes (read, parse, submit) before it can join.
                for _ in range(LOOP_PASSES_PER_STEP):
                    await asyncio.sleep(0)
                continue
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), wait)
            except asyncio.TimeoutError:
                pass
        self._fail_all(list(self._queue), "the server is shutting down")
        self._queue.clear()
        self._flush()

    def step(self) -> float | None:
        """One iteration. Returns 0 when it did work; otherwise how long the driver may wait
        before trying again (None: until a submit)."""
        joiners, wait = self._admit()
        if not joiners and not self.running:
            return wait
        try:
            self._drop_cancelled()
            if joiners:
                self._prefill(joiners)
            if self.running:
                self._decode()
            self.iterations += 1
        except Exception as e:  # a bug or an out-of-memory must not take the server down
            log.exception("engine iteration failed")
            self._fail_all(joiners, f"{type(e).__name__}: {e}")
        self._flush()
        return 0.0

    def _admit(self) -> tuple[list[SeqRequest], float | None]:
        """The queued sequences to prefill in this iteration, and when there
        are none and nothing runs, how long to wait (None: until a submit)."""
        while self._queue and self._queue[0].cancelled:
            self._queue.popleft()
            self.cancelled += 1
        if self.policy == "static":
            if self.running:
                return [], 0.0  # the baseline admits only into an empty batch
            if self._queue:
                waited = time.perf_counter() - self._queue[0].arrival
                if len(self._queue) < self.max_batch and waited < self.static_wait_s:
                    return [], self.static_wait_s - waited
        joiners, budget = [], self.prefill_tokens
        while self._queue and len(self.running) + len(joiners) < self.max_batch:
            s = self._queue.popleft()
            if s.cancelled:
                self.cancelled += 1
                continue
            if joiners and len(s.prompt) > budget:
                self._queue.appendleft(s)
                break
            budget -= len(s.prompt)
            joiners.append(s)
        return joiners, None

    def _emit(self, s: SeqRequest, ev: Event) -> None:
        ev.time = time.perf_counter()
        self._outbox.append((s, ev))

    def _flush(self) -> None:
        """Hand the iteration's events over, after its tensor work (each `emit` is cheap)."""
        items, self._outbox = self._outbox, []
        for s, ev in items:
            try:
                s.emit(ev)
            except Exception:  # a failing listener cancels its sequence
                log.exception("emit failed")
                s.cancelled = True

    def _fail_all(self, joiners: list[SeqRequest], msg: str) -> None:
        for s in {id(s): s for s in self.running + joiners}.values():
            self._emit(s, Event(finish_reason="error", error=msg))
        self.running.clear()
        self.slots.valid.zero_()

    def _drop_cancelled(self) -> None:
        for i in reversed(range(len(self.running))):
            if self.running[i].cancelled:
                self._remove(i)
                self.cancelled += 1

    def _remove(self, i: int) -> None:
        last = len(self.running) - 1
        if i != last:
            col0 = min(s.start_col for s in self.running)
            self.slots.move(last, i, col0)
            self.running[i] = self.running[last]
        self.running.pop()

    @torch.no_grad()
    def _prefill(self, joiners: list[SeqRequest]) -> None:
        """Run the joiners' prompts into slots B..B+n-1, ending at column `cur`."""
        B, n, sl = len(self.running), len(joiners), self.slots
        P = max(len(s.prompt) for s in joiners)
        base, cur = sl.cur - P, sl.cur
        rows = slice(B, B + n)
        tokens = torch.zeros(n, P, dtype=torch.long, device=self.device)
        sl.valid[rows] = False
        sl.counts[rows] = 0
        sl.seen[rows] = False
        for j, s in enumerate(joiners):
            L = len(s.prompt)
            tokens[j, P - L:] = torch.tensor(s.prompt, device=self.device)
            sl.valid[B + j, cur - L:cur] = True
            ids = tokens[j, P - L:]
            sl.seen[B + j, ids[ids < sl.seen.size(1)]] = True  # not P-tuning's virtual ids
            s.start_col, s.length = cur - L, L
        valid = sl.valid[rows, base:cur]
        positions = (valid.long().cumsum(1) - 1).clamp(min=0)
        caches = sl.views(rows, base)
        chunk = max(16, PREFILL_LOGIT_FLOATS // (n * self.model.cfg.vocab_size))
        want_prompt = [j for j, s in enumerate(joiners) if s.prompt_logprobs is not None]
        prompt_info: dict[int, list[TokenInfo]] = {j: [TokenInfo(joiners[j].prompt[0])] for j in want_prompt}
        # Without prompt logprobs only the last position's logits are needed: the output layer
        # (d x vocab per position) would otherwise cost a prompt as much as several decode steps.
        self.model.skip_head = not want_prompt
        try:
            for c0 in range(0, P, chunk):
                c1 = min(P, c0 + chunk)
                mask = causal_padding_mask(valid[:, :c1], c1 - c0)
                out = self.model(tokens[:, c0:c1], positions[:, c0:c1], mask, caches, c0)
                for j in want_prompt:
                    self._prompt_logprobs(joiners[j], P, c0, c1, out[j], prompt_info[j])
        finally:
            self.model.skip_head = False
        last_logits = out[:, -1] if want_prompt else self.model.lm_head(out[:, -1])
        self.running.extend(joiners)
        for j in want_prompt:
            self._emit(joiners[j], Event(prompt=prompt_info[j]))
        self._sample_and_emit(last_logits, first_row=B)

    def _prompt_logprobs(self, s: SeqRequest, P: int, c0: int, c1: int, logits: torch.Tensor,
                         out: list[TokenInfo]) -> None:
        """Log-probabilities of prompt tokens 1.. predicted from the positions in [c0, c1)."""
        pad = P - len(s.prompt)
        lo, hi = max(c0, pad), min(c1, P - 1)  # positions predicting a prompt token
        if lo >= hi:
            return
        lp = token_logprobs(logits[lo - c0:hi - c0], self.vocab_limit)
        targets = torch.tensor(s.prompt[lo - pad + 1:hi - pad + 1], device=lp.device)
        chosen = lp.gather(-1, targets[:, None]).squeeze(-1).tolist()
        for t, c, top in zip(targets.tolist(), chosen, _top(lp, s.prompt_logprobs)):
            out.append(TokenInfo(t, c, top))

    @torch.no_grad()
    def _decode(self) -> None:
        sl = self.slots
        if sl.cur == sl.columns:
            shift = sl.shift_left(len(self.running))
            self.shifts += 1
            for s in self.running:
                s.start_col -= shift
        B, cur = len(self.running), sl.cur
        self.peak_batch = max(self.peak_batch, B)
        col0 = min(s.start_col for s in self.running)
        x = torch.tensor([[s.last] for s in self.running], device=self.device)
        pos = torch.tensor([[s.length] for s in self.running], device=self.device)
        sl.valid[:B, cur] = True
        mask = causal_padding_mask(sl.valid[:B, col0:cur + 1], 1)
        logits = self.model(x, pos, mask, sl.views(slice(0, B), col0), cur - col0)
        sl.cur += 1
        for s in self.running:
            s.length += 1
        self._sample_and_emit(logits[:, -1], first_row=0)

    def _sample_and_emit(self, logits: torch.Tensor, first_row: int) -> None:
        """Pick the next token of running rows first_row.. from their logits, hand it to each
        request, and let finished sequences leave."""
        seqs = self.running[first_row:]
        rows = slice(first_row, first_row + len(seqs))
        params = [s.sampling for s in seqs]
        x = adjust_logits(logits, params, self.slots.counts[rows], self.slots.seen[rows], self._masks)
        u = torch.tensor([torch.rand(1, generator=s.generator).item() if p.temperature > 0 else 0.0
                          for s, p in zip(seqs, params)])
        nxt = pick_tokens(x, params, u)
        self.slots.counts[rows].scatter_add_(1, nxt[:, None], torch.ones(len(seqs), 1, device=self.device))
        self.slots.seen[rows].scatter_(1, nxt[:, None], True)
        want = [j for j, s in enumerate(seqs) if s.logprobs is not None]
        lp = token_logprobs(logits[want], self.vocab_limit) if want else None
        ids = nxt.tolist()
        done = []
        for j, s in enumerate(seqs):
            if s.sampling.max_new_tokens == 0:  # scoring only (echo + logprobs)
                self._emit(s, Event(text=s.stream.close(), finish_reason="length"))
                done.append(first_row + j)
                continue
            tid = ids[j]
            s.last, s.generated = tid, s.generated + 1
            info = TokenInfo(tid)
            if lp is not None and j in want:
                row = lp[want.index(j)]
                info.logprob = row[tid].item() if tid < row.size(0) else float("-inf")
                info.top = _top(row[None], s.logprobs)[0]
            reason = None
            if tid == s.sampling.eod_id:
                text, reason = s.stream.close(), "stop"
            else:
                text = s.stream.push(tid)
                reason = s.stream.finish_reason
                if reason is None and (s.generated >= s.sampling.max_new_tokens or s.length + 1 >= self.max_len):
                    text += s.stream.close()
                    reason = s.stream.finish_reason or "length"
            self._emit(s, Event(text=text, tokens=[info], finish_reason=reason))
            if reason is not None:
                done.append(first_row + j)
        for i in sorted(done, reverse=True):
            self._remove(i)


def _top(lp: torch.Tensor, n: int) -> list[list[tuple[int, float]]]:
    if n <= 0:
        return [[] for _ in range(lp.size(0))]
    vals, idx = lp.topk(min(n, lp.size(-1)), dim=-1)
    return [list(zip(i, v)) for i, v in zip(idx.tolist(), vals.tolist())]
