"""Sampling from a trained checkpoint, with a KV cache.

    python -m hyperclova.generate --checkpoint runs/demo/checkpoints --prompt "오늘 서울의 날씨는"

Prompts of different lengths are left-padded; each sequence gets its own position ids and a mask
that hides its padding, so a prompt decodes the same alone or in a batch. Greedy decoding with
the cache gives the same tokens as recomputing the whole sequence at every step.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

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


def _filter_logits(logits: torch.Tensor, s: Sampling) -> torch.Tensor:
    logits = logits / s.temperature
    if s.top_k > 0:
        kth = torch.topk(logits, min(s.top_k, logits.size(-1))).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if s.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= s.top_p  # keep the smallest set reaching top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def _pick(logits: torch.Tensor, s: Sampling, generator) -> torch.Tensor:
    if s.temperature == 0:
        return logits.argmax(-1)
    probs = _filter_logits(logits.float(), s).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _mask(valid: torch.Tensor, q_len: int) -> torch.Tensor:
    """(B, 1, q_len, K) boolean: causal, padding hidden; a padding query sees itself so that its
    (ignored) row stays finite."""
    K = valid.size(1)
    q_pos = torch.arange(K - q_len, K, device=valid.device)
    k_pos = torch.arange(K, device=valid.device)
    allowed = (k_pos[None, :] <= q_pos[:, None])[None] & valid[:, None, :]
    allowed |= (k_pos[None, :] == q_pos[:, None])[None]
    return allowed[:, None]


@torch.no_grad()
def generate(model: GPT, prompts: list[list[int]], s: Sampling, use_cache: bool = True,
             generator: torch.Generator | None = None) -> list[list[int]]:
    """New tokens for each prompt (up to and including the end-of-document token)."""
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
                       _mask(valid[:, :cur], cur - start), caches, start)
        nxt = _pick(logits[:, -1], s, generator)
        if s.eod_id is not None:
            nxt = torch.where(finished, torch.full_like(nxt, s.eod_id), nxt)
        seq[:, cur] = nxt
        valid[:, cur] = True
        positions[:, cur] = positions[:, cur - 1] + 1
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


def load_model(checkpoint: str | Path, device: str = "cpu") -> tuple[GPT, Config]:
    """A plain GPT for inference from any of the forms a trained model takes: a run's checkpoint
    dir (its `latest`) or a step dir (DCP), a `to-hf` export directory (config.json + weights), or
    a `consolidate` safetensors file. The returned config's `data.tokenizer` names the tokenizer
    to use with it (the export directory itself when it carries one), or is None."""
    import torch.distributed.checkpoint as dcp

    from hyperclova.config import load_config
    from hyperclova.model.gpt import build_model
    from hyperclova.train.checkpoint import resolve_load_path, single_process
    from hyperclova.train.engine import ModelState

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
    model = build_model(cfg.model, device=device)
    with single_process():
        dcp.load({"model": ModelState([model])}, checkpoint_id=str(path))
    model.tie_weights()
    return model.eval(), cfg


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m hyperclova.generate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="step dir, or a checkpoint dir with `latest`")
    p.add_argument("--tokenizer", help="tokenizer dir (default: the run's data.tokenizer)")
    p.add_argument("--prompt", action="append", default=[], help="repeat for a batch")
    p.add_argument("--prompts-file", help="one prompt per line")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--greedy", action="store_true")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    prompts = list(args.prompt)
    if args.prompts_file:
        prompts += [line.rstrip("\n") for line in Path(args.prompts_file).read_text("utf-8").splitlines() if line.strip()]
    if not prompts:
        raise UserError("give at least one --prompt or a --prompts-file")
    from hyperclova.tokenizer import load_tokenizer

    model, cfg = load_model(args.checkpoint, args.device)
    tok_dir = args.tokenizer or cfg.data.tokenizer
    if not tok_dir:
        raise UserError("the checkpoint's config names no data.tokenizer: pass --tokenizer DIR")
    tok = load_tokenizer(tok_dir)
    s = Sampling(args.max_new_tokens, 0.0 if args.greedy else args.temperature, args.top_k,
                 args.top_p, tok.eod_id)
    gen = torch.Generator(device=args.device).manual_seed(args.seed)
    outs = generate(model, [tok.encode(t) for t in prompts], s, not args.no_cache, gen)
    for prompt, ids in zip(prompts, outs):
        ids = [i for i in ids if i != tok.eod_id]
        print(f"### {prompt}{tok.decode(ids)}\n")


if __name__ == "__main__":
    main()
