"""Sampling from a trained checkpoint, with a KV cache.

    python -m hyperclova.generate --checkpoint runs/demo/checkpoints --prompt "오늘 서울의 날씨는"

Prompts of different lengths are left-padded; each sequence gets its own position ids and a mask
that hides its padding, so a prompt decodes the same alone or in a batch. Greedy decoding with
the cache gives the same tokens as recomputing the whole sequence at every step.

This module is the one implementation of sampling: `generate` below and the serving engine
(`hyperclova.serve.batching`) both pick tokens with `adjust_logits` + `pick_tokens`, row by row with
each row's own `Sampling`, drawing one uniform number per sampled token from the caller's
generator(s), so a seeded request gives the same tokens alone or in any batch.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from hyperclova.config import Config
from hyperclova.errors import UserError, cli_main
from hyperclova.model.gpt import GPT, KVCache


@dataclass
class Sampling:
    max_new_tokens: int = 64
    temperature: float = 1.0  # 0: greedy
    top_k: int = 0  # 0: no top-k filter
    top_p: float = 1.0  # 1: no nucleus filter
    eod_id: int | None = None  # stop a sequence at this token
    # Penalties as in OpenAI's API (presence/frequency: over the generated tokens, subtracted from
    # the logits) and CTRL's repetition penalty (over prompt and generated tokens, logits divided
    # by it when positive, multiplied when negative). Neutral values switch them off.
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    # Ids that are never generated: the model's vocabulary is padded past the tokenizer's (ids at
    # or above `vocab_limit` decode to nothing), and special ids other than eod_id mean nothing as
    # output. `Sampling.for_tokenizer` fills both.
    vocab_limit: int | None = None
    suppress_ids: tuple[int, ...] = ()

    @classmethod
    def for_tokenizer(cls, tok, **kwargs) -> "Sampling":
        """Sampling that only generates ids `tok` can decode, stopping at its end-of-document."""
        kwargs.setdefault("eod_id", tok.eod_id)
        return cls(vocab_limit=tok.vocab_size, suppress_ids=never_generated_ids(tok), **kwargs)

    @property
    def has_penalties(self) -> bool:
        return bool(self.presence_penalty or self.frequency_penalty or self.repetition_penalty != 1.0)

    def check(self, names: dict[str, str] | None = None) -> "Sampling":
        """UserError naming the flag or field (`names` maps field -> how the caller spells it)."""
        names = names or {}

        def bad(field: str, why: str):
            raise UserError(f"{names.get(field, field)} {why}, got {getattr(self, field)!r}")

        for f in ("temperature", "top_p", "presence_penalty", "frequency_penalty", "repetition_penalty"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                bad(f, "must be a finite number")
        for f in ("max_new_tokens", "top_k"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int):
                bad(f, "must be an integer")
        if self.max_new_tokens < 0:
            bad("max_new_tokens", "must be 0 or more")
        if self.temperature < 0:
            bad("temperature", "must be 0 (greedy) or more")
        if self.top_k < 0:
            bad("top_k", "must be 0 (off) or more")
        if not 0 < self.top_p <= 1:
            bad("top_p", "must be in (0, 1]")
        for f in ("presence_penalty", "frequency_penalty"):
            if not -2 <= getattr(self, f) <= 2:
                bad(f, "must be in [-2, 2]")
        if self.repetition_penalty <= 0:
            bad("repetition_penalty", "must be above 0 (1 is off)")
        return self


def never_generated_ids(tok) -> tuple[int, ...]:
    """Special ids other than end-of-document, and the morpheme marker (dropped at encoding)."""
    ids = {i for i in tok.special_tokens.values() if i != tok.eod_id}
    if getattr(tok, "marker_id", None) is not None:
        ids.add(tok.marker_id)
    return tuple(sorted(ids))


# Ids the top-k/top-p filters examine before widening (see _candidates).
FILTER_CANDIDATES = 64


def _column(rows: Sequence[Sampling], field: str, device, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor([getattr(r, field) for r in rows], dtype=dtype, device=device)[:, None]


def _banned(rows: Sequence[Sampling], vocab: int, device, cache: dict | None) -> torch.Tensor | None:
    """(B, V) or (1, V) boolean of ids no row may generate (rows usually share one rule).
    `cache` (the caller's dict) keeps the mask of each rule across steps."""
    rules = [(r.vocab_limit, r.suppress_ids) for r in rows]
    if all(rule == (None, ()) for rule in rules):
        return None
    cache = {} if cache is None else cache
    for limit, suppress in set(rules):
        if (limit, suppress) not in cache:
            m = torch.zeros(vocab, dtype=torch.bool, device=device)
            if limit is not None:
                m[limit:] = True
            if suppress:
                m[torch.tensor(suppress, device=device)] = True
            cache[(limit, suppress)] = m
    if len(set(rules)) == 1:
        return cache[rules[0]][None]
    return torch.stack([cache[rule] for rule in rules])


def adjust_logits(logits: torch.Tensor, rows: Sequence[Sampling], counts: torch.Tensor | None = None,
                  seen: torch.Tensor | None = None, mask_cache: dict | None = None) -> torch.Tensor:
    """fp32 logits (B, V) that greedy and sampled picks choose from: banned ids at -inf, then
    penalties. counts: (B, V) occurrences among each row's generated tokens; seen: (B, V) bool,
    the ids in each row's prompt or output (both only needed when a row has penalties).
    mask_cache: a dict the caller keeps across steps, so banned-id masks are built once."""
    x = logits.float()
    banned = _banned(rows, x.size(-1), x.device, mask_cache)
    if any(r.has_penalties for r in rows):
        if counts is None or seen is None:
            raise ValueError("penalties need the token counts of each row")
        rep = _column(rows, "repetition_penalty", x.device)
        x = torch.where(seen, torch.where(x > 0, x / rep, x * rep), x)
        x = x - _column(rows, "frequency_penalty", x.device) * counts
        x = x - _column(rows, "presence_penalty", x.device) * (counts > 0)
    if banned is not None:
        x = x.masked_fill(banned, float("-inf"))
    return x


def filter_logits(x: torch.Tensor, rows: Sequence[Sampling]) -> torch.Tensor:
    """Temperature, then top-k, then top-p (on the top-k renormalised distribution), per row;
    dropped ids at -inf, ids in their places (what `pick_tokens` samples from)."""
    x = x / _column(rows, "temperature", x.device)
    filtering = [i for i, r in enumerate(rows) if _filters(r)]
    if filtering:
        idx = torch.tensor(filtering, device=x.device)
        vals, ids = _candidates(x[idx], [rows[i] for i in filtering])
        x = x.clone()
        x[idx] = torch.full_like(x[idx], float("-inf")).scatter(-1, ids, vals)
    return x


def _filters(r: Sampling) -> bool:
    return r.top_k > 0 or r.top_p < 1


def _candidates(x: torch.Tensor, rows: Sequence[Sampling]) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, ids) of each filtering row's best ids in descending order, the ones top-k/top-p
    drop at -inf (the kept ones are a prefix). A full sort of a 64k vocabulary costs more than a
    small model's decode step, so the best FILTER_CANDIDATES ids are looked at first (a partial
    sort) and the search widens only while some row's nucleus reaches past them."""
    V = x.size(-1)
    top_k = torch.tensor([r.top_k if r.top_k > 0 else V for r in rows], device=x.device)[:, None]
    top_p = torch.tensor([r.top_p if r.top_p < 1 else math.inf for r in rows], device=x.device)[:, None]
    use_p = any(r.top_p < 1 for r in rows)
    full_norm = None
    k = min(V, max(FILTER_CANDIDATES, *(r.top_k for r in rows)))
    while True:
        vals, ids = x.topk(k, dim=-1)  # descending
        drop = torch.arange(k, device=x.device)[None] >= top_k
        complete = top_k <= k
        if use_p:
            # probabilities within the top-k set (whole vocabulary for rows without top-k)
            norm = vals.masked_fill(drop, float("-inf")).logsumexp(-1, keepdim=True)
            if not bool(complete.all()):
                full_norm = x.logsumexp(-1, keepdim=True) if full_norm is None else full_norm
                norm = torch.where(complete, norm, full_norm)
            p = (vals - norm).exp().masked_fill(drop, 0.0)
            cum = p.cumsum(-1)
            drop |= cum - p >= top_p  # keep the smallest set reaching top_p
            complete |= cum[:, -1:] >= top_p
        if k == V or bool(complete.all()):
            return vals.masked_fill(drop, float("-inf")), ids
        k = min(V, 8 * k)


def _inverse_cdf(p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Per row, the position where the cumulative probability passes u (never a zero-probability
    position, whatever the rounding)."""
    cdf = p.cumsum(-1)
    pos = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None].contiguous(), right=True).squeeze(-1)
    return torch.minimum(pos, (p > 0).cumsum(-1).argmax(-1))  # argmax: the last non-zero


def pick_tokens(x: torch.Tensor, rows: Sequence[Sampling], uniforms: torch.Tensor | None) -> torch.Tensor:
    """Next ids (B,) from adjusted logits `x`: argmax for temperature 0, else inverse-CDF sampling
    with one uniform number in [0, 1) per row (rows at temperature 0 ignore theirs). A filtering
    row samples among its kept ids in descending order, any other row over the whole vocabulary in
    id order; either way a row's pick depends only on its own logits, settings and number."""
    out = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
    greedy = [i for i, r in enumerate(rows) if r.temperature == 0]
    if greedy:
        g = torch.tensor(greedy, device=x.device)
        out[g] = x[g].argmax(-1)
    if len(greedy) == len(rows):
        return out
    if uniforms is None:
        raise ValueError("sampling needs uniform numbers")
    u = uniforms.to(device=x.device, dtype=torch.float32)
    for chosen in ([i for i, r in enumerate(rows) if r.temperature > 0 and _filters(r)],
                   [i for i, r in enumerate(rows) if r.temperature > 0 and not _filters(r)]):
        if not chosen:
            continue
        idx = torch.tensor(chosen, device=x.device)
        sub = [rows[i] for i in chosen]
        xs = x[idx] / _column(sub, "temperature", x.device)
        if _filters(sub[0]):
            vals, ids = _candidates(xs, sub)
            out[idx] = ids.gather(-1, _inverse_cdf(vals.softmax(-1), u[idx])[:, None]).squeeze(-1)
        else:
            out[idx] = _inverse_cdf(xs.softmax(-1), u[idx])
    return out


def token_logprobs(logits: torch.Tensor, vocab_limit: int | None = None) -> torch.Tensor:
    """Log-probabilities of the model's distribution over real tokens (padding ids excluded),
    before penalties, temperature and filters: what `logprobs` in the serving API reports."""
    x = logits.float()
    if vocab_limit is not None and vocab_limit < x.size(-1):
        x = x[..., :vocab_limit]
    return x.log_softmax(-1)


def causal_padding_mask(valid: torch.Tensor, q_len: int) -> torch.Tensor:
    """(B, 1, q_len, K) boolean: causal, padding hidden; a padding query sees itself so that its
    (ignored) row stays finite."""
    K = valid.size(1)
    q_pos = torch.arange(K - q_len, K, device=valid.device)
    k_pos = torch.arange(K, device=valid.device)
    allowed = (k_pos[None, :] <= q_pos[:, None])[None] & valid[:, None, :]
    allowed |= (k_pos[None, :] == q_pos[:, None])[None]
    return allowed[:, None]


def uniforms(generator: torch.Generator | None, n: int) -> torch.Tensor:
    """n uniform numbers in [0, 1) drawn on the CPU, so a seed means the same on every device."""
    return torch.rand(n, generator=generator)


@torch.no_grad()
def generate(model: GPT, prompts: list[list[int]], s: Sampling, use_cache: bool = True,
             generator: torch.Generator | None = None) -> list[list[int]]:
    """New tokens for each prompt (up to and including the end-of-document token). `generator`
    is a CPU generator (one uniform number per sampled token is drawn from it)."""
    s.check()
    if not prompts or any(len(p) == 0 for p in prompts):
        raise UserError("every prompt must encode to at least one token")
    cfg, device = model.cfg, model.tok_emb.weight.device
    B, L = len(prompts), max(len(p) for p in prompts)
    if L >= cfg.seq_len:
        raise UserError(f"a prompt has {L} tokens; the model's context is {cfg.seq_len}")
    total = min(cfg.seq_len, L + s.max_new_tokens)
    seq = torch.zeros(B, total, dtype=torch.long, device=device)
    valid = torch.zeros(B, total, dtype=torch.bool, device=device)
    for i, p in enumerate(prompts):
        seq[i, L - len(p):L] = torch.tensor(p, device=device)
        valid[i, L - len(p):L] = True
    positions = (valid.long().cumsum(1) - 1).clamp(min=0)
    rows = [s] * B
    masks: dict = {}
    counts = seen = None
    if s.has_penalties:
        counts = torch.zeros(B, cfg.vocab_size, device=device)
        seen = torch.zeros(B, cfg.vocab_size, dtype=torch.bool, device=device)
        seen.scatter_(1, seq[:, :L], valid[:, :L])
    caches = None
    if use_cache:
        shape = (B, cfg.n_heads, total, cfg.d_head)
        dtype = model.tok_emb.weight.dtype
        caches = {k: KVCache(torch.zeros(shape, dtype=dtype, device=device),
                             torch.zeros(shape, dtype=dtype, device=device)) for k in model.layers}
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    model.eval()
    for cur in range(L, total):
        start = cur - 1 if (use_cache and cur > L) else 0
        logits = model(seq[:, start:cur], positions[:, start:cur],
                       causal_padding_mask(valid[:, :cur], cur - start), caches, start)
        x = adjust_logits(logits[:, -1], rows, counts, seen, masks)
        nxt = pick_tokens(x, rows, uniforms(generator, B) if s.temperature > 0 else None)
        if s.eod_id is not None:
            nxt = torch.where(finished, torch.full_like(nxt, s.eod_id), nxt)
        seq[:, cur] = nxt
        valid[:, cur] = True
        positions[:, cur] = positions[:, cur - 1] + 1
        if counts is not None:
            counts.scatter_add_(1, nxt[:, None], torch.ones(B, 1, device=device))
            seen.scatter_(1, nxt[:, None], True)
        if s.eod_id is not None:
            finished |= nxt == s.eod_id
            if finished.all():
                total = cur + 1
                break
    out = []
    for row in seq[:, L:total].tolist():
        if s.eod_id is not None and s.eod_id in row:
            row = row[: row.index(s.eod_id) + 1]
        out.append(row)
    return out


def load_model(checkpoint: str | Path | None, device: str = "cpu",
               adapter=None) -> tuple[GPT, Config]:
    """A plain GPT for inference from any of the forms a trained model takes: a run's checkpoint
    dir (its `latest`) or a step dir (DCP), a `to-hf` export directory (config.json + weights), or
    a `consolidate` safetensors file. The returned config's `data.tokenizer` names the tokenizer
    to use with it (the export directory itself when it carries one), or is None.

    `adapter`: a tuned checkpoint (python -m hyperclova.tune; its path or the opened
    `hyperclova.tune.adapters.Adapter`) applied to its base, which is `checkpoint` when given (it
    must be the DCP checkpoint the adapter was tuned on) or else the base the adapter names."""
    import torch.distributed.checkpoint as dcp

    from hyperclova.config import load_config
    from hyperclova.train.checkpoint import resolve_load_path, single_process
    from hyperclova.train.engine import ModelState

    if adapter is not None:
        return _load_tuned(checkpoint, device, adapter)
    src = Path(checkpoint)
    if src.is_file() and src.suffix == ".safetensors":
        from hyperclova.convert.to_hf import load_consolidated

        model = load_consolidated(src, device)
        return model.eval(), Config(model=model.cfg)
    if (src / "config.json").is_file() and not (src / ".metadata").is_file():
        from hyperclova.convert.from_hf import load_hf_model
        from hyperclova.tokenizer.load import META_FILE

        model, mc = load_hf_model(src, device)
        cfg = Config(model=mc)
        if (src / META_FILE).is_file():
            cfg.data.tokenizer = str(src)
        return model.eval(), cfg
    path = resolve_load_path(str(checkpoint))
    cfg = load_config(path / "config.yaml")
    with torch.device("meta"):
        model = GPT(cfg.model)
    model.to_empty(device=device)  # every weight comes from the checkpoint
    with single_process():
        dcp.load({"model": ModelState([model])}, checkpoint_id=str(path))
    model.tie_weights()
    return model.eval(), cfg


def _load_tuned(checkpoint, device, adapter) -> tuple[GPT, Config]:
    """The base checkpoint with the adapter's structure (hyperclova/tune/adapters.py) and
    weights: LoRA factors, P-tuning's stored prompt table, or a fully tuned model's weights."""
    from hyperclova.config import load_config
    from hyperclova.tune.adapters import (
        Adapter,
        inference_transforms,
        load_adapter_weights,
        load_model_keys,
        open_adapter,
        resolve_base,
    )

    ad = adapter if isinstance(adapter, Adapter) else open_adapter(adapter)
    base = resolve_base(ad, checkpoint)
    cfg = load_config(base / "config.yaml")
    with torch.device("meta"):
        model = GPT(cfg.model)
    for fn in inference_transforms(ad):
        fn(model)
    model.to_empty(device=device)
    model.tie_weights()
    model.init_weights(ad.cfg.train.seed)  # sets P-tuning's stored table (its param_init)
    load_model_keys([model], base)
    load_adapter_weights([model], ad)
    model.tie_weights()
    cfg.data.tokenizer = ad.cfg.data.tokenizer or cfg.data.tokenizer
    return model.eval(), cfg


CLI_FLAGS = {"max_new_tokens": "--max-new-tokens", "temperature": "--temperature", "top_k": "--top-k",
             "top_p": "--top-p", "presence_penalty": "--presence-penalty",
             "frequency_penalty": "--frequency-penalty", "repetition_penalty": "--repetition-penalty"}


def read_prompts_file(path: str) -> list[str]:
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--prompts-file {path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    return [line for line in text.splitlines() if line.strip()]


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m hyperclova.generate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint",
                   help="a run's checkpoint dir (its `latest`), a step dir, a to-hf export dir or "
                        "a consolidate .safetensors file")
    p.add_argument("--adapter", help="a tuned checkpoint (python -m hyperclova.tune) applied to its "
                                     "base (--checkpoint, default: the base it names)")
    p.add_argument("--tokenizer", help="tokenizer dir (default: the run's data.tokenizer)")
    p.add_argument("--prompt", action="append", default=[], help="repeat for a batch")
    p.add_argument("--prompts-file", help="one prompt per line")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--presence-penalty", type=float, default=0.0)
    p.add_argument("--frequency-penalty", type=float, default=0.0)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--greedy", action="store_true")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    if not (args.checkpoint or args.adapter):
        p.error("give --checkpoint, --adapter or both")
    s = Sampling(args.max_new_tokens, 0.0 if args.greedy else args.temperature, args.top_k,
                 args.top_p, presence_penalty=args.presence_penalty,
                 frequency_penalty=args.frequency_penalty,
                 repetition_penalty=args.repetition_penalty).check(CLI_FLAGS)
    prompts = list(args.prompt)
    if args.prompts_file:
        prompts += read_prompts_file(args.prompts_file)
    if not prompts:
        raise UserError("give at least one --prompt or a --prompts-file")
    from dataclasses import replace

    from hyperclova.tokenizer import load_tokenizer

    tuned = None
    if args.adapter:  # a tuned model reads its prompts as it was tuned (P-tuning's template)
        from hyperclova.tune.adapters import adapter_tokenizer, open_adapter, wrap_prompt

        tuned = open_adapter(args.adapter)
    model, cfg = load_model(args.checkpoint, args.device, tuned)
    tok_dir = args.tokenizer or cfg.data.tokenizer
    if not tok_dir:
        raise UserError("the checkpoint's config names no data.tokenizer: pass --tokenizer DIR")
    tok = load_tokenizer(tok_dir)
    s = replace(s, eod_id=tok.eod_id, vocab_limit=tok.vocab_size, suppress_ids=never_generated_ids(tok))
    gen = torch.Generator().manual_seed(args.seed)
    encode = tok.encode
    if tuned is not None:
        ptok = adapter_tokenizer(tuned.cfg, tok)
        encode = lambda t: ptok.encode(wrap_prompt(tuned.cfg, t))  # noqa: E731
    outs = generate(model, [encode(t) for t in prompts], s, not args.no_cache, gen)
    for prompt, ids in zip(prompts, outs):
        ids = [i for i in ids if i != tok.eod_id]
        print(f"### {prompt}{tok.decode(ids)}\n")


if __name__ == "__main__":
    main()
