"""Log-likelihood and greedy generation for evaluation, batched, in any layout.

Every call into a parallel model goes through one function shaped as the engine's
`forward_eval(tokens, reduce)` (docs/eval.md): `reduce` gets a micro-batch's full-vocabulary
logits and returns something small (per-token log-probabilities), so a tensor- or pipeline-
parallel engine runs the same scorer. `PlainModel` gives that shape to a single-process GPT and
offers two cache-based shortcuts on top, which the scorer uses when present: the KV-cache
generator, and `score_groups` (the label words of one prompt scored on one cached prompt).

Requests are sorted by length (longest first, so memory peaks in the first batch), cut into
batches under a token budget, and padded on the right: with causal attention, padding after a
sequence cannot change its logits, so a request scores the same in any batch. Data-parallel ranks
take every dp_size-th request of the sorted list and the results are gathered on every rank.

Context and continuation are encoded *together*, as the model saw text in training, and split
where the context's bytes end. When a token straddles that point (a morpheme or BPE merge that
spans both sides), or, with a morpheme pre-splitter, the point falls inside a morpheme, the split
moves back to the start of that token or morpheme: the continuation scored is then whole tokens
of whole morphemes, never a piece the model would not have produced. Those requests are counted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Sequence

import torch
import torch.distributed as dist

from hyperclova.errors import UserError

DEFAULT_BATCH_TOKENS = 8192  # logits of a batch: tokens x vocab x 4 bytes (2 GB at a 64k vocab)


class EvalModel(Protocol):
    seq_len: int
    dp_rank: int
    dp_size: int

    def forward_eval(self, tokens: torch.Tensor,
                     reduce: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor: ...


class PlainModel:
    """A whole GPT in this process: `forward_eval` with the engine's signature. With dp_size > 1
    (torchrun, default process group started) each rank holds a full copy and scores its share."""

    def __init__(self, model, dp_rank: int = 0, dp_size: int = 1):
        self.plain_model = model.eval()  # generation uses the KV-cache generator on it
        self.seq_len = model.cfg.seq_len
        self.device = model.tok_emb.weight.device
        self.dp_rank, self.dp_size = dp_rank, dp_size

    @torch.no_grad()
    def forward_eval(self, tokens, reduce):
        return reduce(self.plain_model(tokens.to(self.device)).float())

    @torch.no_grad()
    def score_groups(self, groups: list[tuple[list[int], list[list[int]]]]) -> list[list[tuple[float, bool]]]:
        """(log-probability, greedy) of each continuation of each (prefix, continuations) group.
        The prefixes run once, left-padded into one batch with a KV cache; the cache is copied to
        one row per continuation, and all continuations run as one batch on top of it."""
        from hyperclova.generate import causal_padding_mask
        from hyperclova.model.gpt import KVCache

        m, dev = self.plain_model, self.device
        G, P = len(groups), max(len(p) for p, _ in groups)
        C = max(len(c) for _, cs in groups for c in cs)
        total = P + C - 1
        tokens = torch.zeros(G, P, dtype=torch.long)
        valid = torch.zeros(G, total, dtype=torch.bool)
        for g, (prefix, _) in enumerate(groups):
            tokens[g, P - len(prefix):] = torch.tensor(prefix)
            valid[g, P - len(prefix):P] = True
        positions = (valid[:, :P].long().cumsum(1) - 1).clamp(min=0)
        shape = (G, m.cfg.n_heads, total, m.cfg.d_head)
        dtype = m.tok_emb.weight.dtype
        caches = {k: KVCache(torch.zeros(shape, dtype=dtype, device=dev),
                             torch.zeros(shape, dtype=dtype, device=dev)) for k in m.layers}
        first = m(tokens.to(dev), positions.to(dev), causal_padding_mask(valid[:, :P], P).to(dev),
                  caches)[:, -1].float().log_softmax(-1)
        # one device-to-host copy per batch, not one sync per token (.item() in the loops)
        first, first_arg = first.cpu(), first.argmax(-1).tolist()
        out = [[([first[g, c[0]].item()], [first_arg[g] == c[0]]) for c in cs]
               for g, (_, cs) in enumerate(groups)]
        if C > 1:
            owner = [(g, j) for g, (_, cs) in enumerate(groups) for j in range(len(cs))]
            idx = torch.tensor([g for g, _ in owner], device=dev)
            caches = {k: KVCache(c.k[idx].clone(), c.v[idx].clone()) for k, c in caches.items()}
            R = len(owner)
            ctoks = torch.zeros(R, C - 1, dtype=torch.long)
            cvalid = valid[idx.cpu()].clone()
            ctgt = torch.zeros(R, C - 1, dtype=torch.long)  # the token each position predicts
            cpos = torch.zeros(R, C - 1, dtype=torch.long)
            for r, (g, j) in enumerate(owner):
                c = groups[g][1][j]
                ctoks[r, : len(c) - 1] = torch.tensor(c[:-1])
                ctgt[r, : len(c) - 1] = torch.tensor(c[1:])
                cvalid[r, P:P + len(c) - 1] = True
                cpos[r] = len(groups[g][0]) + torch.arange(C - 1)
            logp = m(ctoks.to(dev), cpos.to(dev), causal_padding_mask(cvalid, C - 1).to(dev), caches,
                     P).float().log_softmax(-1)
            tgt_lp = logp.gather(-1, ctgt.to(dev).unsqueeze(-1)).squeeze(-1).tolist()
            arg = logp.argmax(-1).tolist()
            for r, (g, j) in enumerate(owner):
                c = groups[g][1][j]
                lps, greedy = out[g][j]
                for t in range(1, len(c)):
                    lps.append(tgt_lp[r][t - 1])
                    greedy.append(arg[r][t - 1] == c[t])
        return [[(sum(lps), all(gr)) for lps, gr in row] for row in out]


@dataclass
class LLResult:
    logprob: float  # sum of the continuation tokens' log-probabilities
    n_tokens: int
    greedy: bool  # every continuation token is the argmax
    straddled: bool = False  # the context/continuation boundary fell inside a token


@dataclass
class Encoded:
    ids: list[int]
    split: int  # ids[:split] is the context, ids[split:] the continuation
    straddled: bool


class Scorer:
    def __init__(self, model: EvalModel, tokenizer, batch_size: int = 16,
                 batch_tokens: int = DEFAULT_BATCH_TOKENS):
        self.model, self.tok = model, tokenizer
        self.batch_size, self.batch_tokens = max(1, batch_size), batch_tokens

    # -- encoding ----------------------------------------------------------------------------------

    def encode_pair(self, context: str, continuation: str) -> Encoded:
        """Encode context+continuation as one text; split on the token boundary at or before the
        end of the context (see the module docstring)."""
        ids = self.tok.encode(context + continuation)
        ctx_bytes = len(self.tok.normalize(context).encode("utf-8"))
        ends = self._token_ends(ids, context + continuation)
        cut = self._morpheme_start(context, continuation, ctx_bytes)
        split = 0
        while split < len(ids) and ends[split] <= cut:
            split += 1
        straddled = (ends[split - 1] if split else 0) != ctx_bytes
        if split == len(ids):  # an empty continuation: nothing to score
            raise UserError(f"continuation {continuation!r} encodes to no tokens after the context")
        if split == 0:  # no whole context token: condition on the end-of-document token
            ids, split = [self.tok.eod_id] + ids, 1
        return Encoded(ids, split, straddled)

    def _morpheme_start(self, context: str, continuation: str, at: int) -> int:
        """Byte offset `at` (the end of the context), or, when it falls inside a morpheme (a
        tokenizer with MeCab-ko pre-splitting), that morpheme's start: a token boundary inside a
        morpheme is a split the pre-splitter would not make, so the whole morpheme is scored."""
        if getattr(self.tok, "meta", {}).get("pretokenization") != "mecab-ko":
            return at
        if continuation[:1].isspace() and not context[-1:].isspace():
            return at  # a segment is a morpheme with the whitespace before it: a boundary
        pos = 0
        for seg in self.tok.segments(context + continuation):
            n = len(seg.encode("utf-8"))
            if pos + n > at:
                return pos
            pos += n
        return at

    def _token_ends(self, ids: list[int], text: str) -> list[int]:
        """Cumulative byte offset at the end of each token."""
        ends, pos = [], 0
        for i in ids:
            pos += len(self.tok.id_to_bytes(i))
            ends.append(pos)
        if pos != len(self.tok.normalize(text).encode("utf-8")):
            # Tokenizers whose pieces do not concatenate to the text (e.g. SentencePiece's dummy
            # prefix): measure each prefix by decoding it instead.
            ends = [len(self.tok.decode(ids[: k + 1]).encode("utf-8")) for k in range(len(ids))]
        return ends

    # -- log-likelihood ----------------------------------------------------------------------------

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[LLResult]:
        encoded = [self.encode_pair(c, x) for c, x in pairs]
        results = self.loglikelihood_tokens([(e.ids, e.split) for e in encoded])
        for r, e in zip(results, encoded):
            r.straddled = e.straddled
        return results

    def loglikelihood_tokens(self, items: Sequence[tuple[list[int], int]]) -> list[LLResult]:
        """items: (ids, split); scores ids[split:] given ids[:split]. A sequence longer than the
        model's context keeps its last seq_len+1 tokens (the continuation must fit)."""
        L = self.model.seq_len
        rows = []
        for ids, split in items:
            n_cont = len(ids) - split
            if n_cont < 1 or split < 1:
                raise ValueError("need at least one context and one continuation token")
            if n_cont > L:
                raise UserError(f"a continuation of {n_cont} tokens does not fit the model's "
                                f"context of {L}")
            ids = ids[-(L + 1):]
            rows.append((ids[:-1], ids[1:], n_cont))
        shared = getattr(self.model, "score_groups", None)
        groups: dict[tuple, list[int]] = {}
        if shared is not None:
            for i, (inp, _, n_cont) in enumerate(rows):
                groups.setdefault(tuple(inp[: len(inp) - n_cont + 1]), []).append(i)
            groups = {k: v for k, v in groups.items() if len(v) > 1}
        results: list = [None] * len(rows)
        # Requests that share their context (the choices of one question) run the context once.
        in_group = {i for v in groups.values() for i in v}
        singles = [i for i in range(len(rows)) if i not in in_group]
        for i, r in zip(singles, self._run([rows[i] for i in singles], self._ll_batch,
                                           lambda r: len(r[0]))):
            results[i] = LLResult(*r)
        group_rows = [(list(prefix), [rows[i][1][-rows[i][2]:] for i in idx])
                      for prefix, idx in groups.items()]
        # Batched by the KV-cache footprint: prefix length times continuations.
        outs = self._run(group_rows, lambda batch: shared(batch),
                         lambda g: (len(g[0]) + max(map(len, g[1]))) * len(g[1]))
        for idx, res in zip(groups.values(), outs):
            for i, (lp, g) in zip(idx, res):
                results[i] = LLResult(lp, rows[i][2], g)
        return results

    def _padded_length(self, n: int) -> int:
        """Right padding never changes a row's logits; a model may ask for few distinct lengths."""
        m = getattr(self.model, "pad_to", 1)
        return min(-(-n // m) * m, self.model.seq_len) if m > 1 else n

    def _ll_batch(self, batch: list[tuple[list[int], list[int], int]]):
        T = self._padded_length(max(len(inp) for inp, _, _ in batch))
        inputs = torch.zeros(len(batch), T, dtype=torch.long)
        targets = torch.zeros(len(batch), T, dtype=torch.long)
        mask = torch.zeros(len(batch), T, dtype=torch.bool)
        for b, (inp, tgt, n_cont) in enumerate(batch):
            inputs[b, : len(inp)] = torch.tensor(inp)
            targets[b, : len(tgt)] = torch.tensor(tgt)
            mask[b, len(inp) - n_cont: len(inp)] = True

        def reduce(logits: torch.Tensor) -> torch.Tensor:
            # Only the scored positions go through log_softmax: (N, V), not (B, T, V).
            m, tgt = mask.to(logits.device), targets.to(logits.device)
            sel = logits[m].float().log_softmax(-1)
            t = tgt[m]
            lp = sel.gather(-1, t[:, None]).squeeze(-1)
            greedy = (sel.argmax(-1) == t).to(lp.dtype)
            return torch.stack([lp, greedy], -1).double()

        flat = self.model.forward_eval(inputs, reduce).cpu()
        out, pos = [], 0
        for _, _, n_cont in batch:
            part = flat[pos: pos + n_cont]
            pos += n_cont
            out.append((float(part[:, 0].sum()), n_cont, bool(part[:, 1].all())))
        return out

    def rolling_windows(self, ids: list[int], window: Optional[int] = None,
                        stride: Optional[int] = None) -> list[tuple[list[int], int]]:
        """(ids, split) items that score every token of `ids` exactly once (the first
        conditioned on the end-of-document token): windows of `window` tokens advancing by
        `stride`, so each token after the first window has window - stride tokens of context."""
        window = min(window or self.model.seq_len, self.model.seq_len)
        stride = stride or window
        if not 0 < stride <= window:
            raise UserError(f"stride must be in 1..{window}, got {stride}")
        seq = [self.tok.eod_id] + list(ids)
        items, scored = [], 0  # scored: tokens of seq[1:] done
        while scored < len(ids):
            end = min(scored + 1 + (stride if items else window), len(seq))
            start = max(0, end - window - 1)
            items.append((seq[start:end], end - start - (end - 1 - scored)))
            scored = end - 1
        return items

    def rolling_loglikelihood(self, ids: list[int], window: Optional[int] = None,
                              stride: Optional[int] = None) -> tuple[float, int]:
        res = self.loglikelihood_tokens(self.rolling_windows(ids, window, stride))
        return sum(r.logprob for r in res), sum(r.n_tokens for r in res)

    # -- generation ----------------------------------------------------------------------------

    def generate(self, contexts: Sequence[str], until: Sequence[str], max_new_tokens: int) -> list[str]:
        """Greedy continuation of each context, cut at the first stop string."""
        return self.generate_ids([self.tok.encode(c) for c in contexts], until, max_new_tokens)

    def generate_ids(self, prompts: Sequence[list[int]], until: Sequence[str],
                     max_new_tokens: int) -> list[str]:
        rows = [(list(ids), max_new_tokens) for ids in prompts]
        for ids, _ in rows:
            if len(ids) + max_new_tokens > self.model.seq_len:
                raise UserError(f"a prompt of {len(ids)} tokens plus {max_new_tokens} new tokens "
                                f"exceeds the model's context of {self.model.seq_len}")
        outs = self._run(rows, self._gen_batch, lambda r: len(r[0]) + r[1])
        return [truncate_at_stop(self._decode(ids), until) for ids in outs]

    def _decode(self, ids: list[int]) -> str:
        """Text of generated ids without the end-of-document token. A model's vocabulary may be
        padded beyond the tokenizer's; ids there have no text and are dropped (a trained model
        gives them no mass)."""
        n = self._n_token_ids()
        return self.tok.decode([t for t in ids if t != self.tok.eod_id and t < n])

    def _n_token_ids(self) -> int:
        hf = self.tok.hf_tokenizer
        return hf.get_vocab_size(with_added_tokens=True) if hf is not None else self.tok.vocab_size

    def _gen_batch(self, batch: list[tuple[list[int], int]]) -> list[list[int]]:
        prompts, n_new = [ids for ids, _ in batch], batch[0][1]
        plain = getattr(self.model, "plain_model", None)
        if plain is not None:
            from hyperclova.generate import Sampling, generate

            return generate(plain, prompts, Sampling(max_new_tokens=n_new, temperature=0.0,
                                                     eod_id=self.tok.eod_id))
        return self._greedy_by_forward(prompts, n_new)

    def _greedy_by_forward(self, prompts: list[list[int]], n_new: int) -> list[list[int]]:
        """Greedy decoding through forward_eval alone (no cache): what a tensor- or pipeline-
        parallel engine runs. Right-padded, so each row's argmax is read at its own last token."""
        seqs = [list(p) for p in prompts]
        done = [False] * len(seqs)
        for _ in range(n_new):
            T = self._padded_length(max(len(s) for s in seqs))
            tokens = torch.zeros(len(seqs), T, dtype=torch.long)
            last = torch.tensor([len(s) - 1 for s in seqs])
            for b, s in enumerate(seqs):
                tokens[b, : len(s)] = torch.tensor(s)
            n_ids = self._n_token_ids()  # never pick a padded-vocabulary id
            nxt = self.model.forward_eval(
                tokens, lambda logits: logits[torch.arange(len(seqs)), last.to(logits.device), :n_ids].argmax(-1))
            for b, t in enumerate(nxt.tolist()):
                if not done[b]:
                    seqs[b].append(t)
                    done[b] = t == self.tok.eod_id
            if all(done) and self.model.dp_size == 1:  # dp ranks keep step with each other
                break
        outs = []
        for p, s in zip(prompts, seqs):
            new = s[len(p):]
            outs.append(new[: new.index(self.tok.eod_id) + 1] if self.tok.eod_id in new else new)
        return outs

    # -- batching and data parallelism -------------------------------------------------------------

    def _run(self, rows: list, fn: Callable[[list], list], length: Callable[[tuple], int]) -> list:
        """Sort by length, split over dp ranks, batch under the token budget, gather in order."""
        order = sorted(range(len(rows)), key=lambda i: (-length(rows[i]), i))
        dp_rank, dp_size = self.model.dp_rank, self.model.dp_size
        mine = order[dp_rank::dp_size]
        batches = self._batches([(i, length(rows[i])) for i in mine])
        n_batches = _max_over_ranks(len(batches)) if dp_size > 1 else len(batches)
        results: dict[int, object] = {}
        for k in range(n_batches):
            if k < len(batches):
                for i, r in zip(batches[k], fn([rows[i] for i in batches[k]])):
                    results[i] = r
            elif rows:
                # A rank with fewer batches keeps step with the others (a sharded engine's
                # forward is collective over data-parallel ranks); the result is discarded.
                fn([rows[order[-1]]])
        if dp_size > 1:
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, results)
            for part in gathered:
                results.update(part)
        return [results[i] for i in range(len(rows))]

    def _batches(self, sized: list[tuple[int, int]]) -> list[list[int]]:
        """Consecutive (longest-first) requests, at most batch_size of them and batch_tokens
        padded tokens per batch (a single longer request still gets its own batch)."""
        batches, cur, longest = [], [], 0
        for i, n in sized:
            if cur and (len(cur) >= self.batch_size or max(longest, n) * (len(cur) + 1) > self.batch_tokens):
                batches.append(cur)
                cur, longest = [], 0
            cur.append(i)
            longest = max(longest, n)
        if cur:
            batches.append(cur)
        return batches


def _max_over_ranks(n: int) -> int:
    t = torch.tensor([n], dtype=torch.long)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def truncate_at_stop(text: str, until: Sequence[str]) -> str:
    cut = len(text)
    for s in until:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]


def bits_per_char(logprob_nats: float, n_chars: int) -> float:
    return -logprob_nats / math.log(2) / max(n_chars, 1)
