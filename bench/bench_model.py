"""Training tokens/s on CPU: hyperclova's GPT versus transformers' GPT2LMHeadModel.

Same dimensions (exact GeLU, tied head, biases, LayerNorm eps), same threads, same batch, same
AdamW; a full step is forward + loss + backward + optimizer step. The two models alternate, round
after round, so machine noise hits both alike; the ratio of medians is reported.

    python bench/bench_model.py --threads 2 --rounds 5
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from hyperclova.config import ModelConfig
from hyperclova.model.gpt import build_model
from hyperclova.model.presets import PRESETS

CASES = {
    "tiny": (PRESETS["tiny"], 8),
    "137m-width-2L": (ModelConfig(n_layers=2, d_model=768, n_heads=16, vocab_size=64000, seq_len=512), 4),
}


def hf_model(cfg: ModelConfig):
    from transformers import GPT2Config, GPT2LMHeadModel

    hf = GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.seq_len, n_embd=cfg.d_model,
                    n_layer=cfg.n_layers, n_head=cfg.n_heads, activation_function="gelu",
                    layer_norm_epsilon=cfg.ln_eps, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                    tie_word_embeddings=True)
    return GPT2LMHeadModel(hf)


def ours_step(model, opt, x, y):
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def hf_step(model, opt, x, y):
    # labels already shifted, as our data pipeline gives them: no HF-side shift copy
    logits = model(input_ids=x).logits
    loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def time_steps(step, model, opt, x, y, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        step(model, opt, x, y)
    return (time.perf_counter() - t0) / n


def bench_case(name: str, rounds: int, steps: int, compile_ours: bool) -> dict:
    cfg, batch = CASES[name]
    torch.manual_seed(0)
    x = torch.randint(0, cfg.vocab_size, (batch, cfg.seq_len))
    y = torch.randint(0, cfg.vocab_size, (batch, cfg.seq_len))
    ours = build_model(cfg, seed=0).train()
    if compile_ours:
        ours = torch.compile(ours)
    hf = hf_model(cfg).train()
    make_opt = lambda m: torch.optim.AdamW(m.parameters(), lr=1e-4, foreach=True)
    runs = {"hyperclova": (ours_step, ours, make_opt(ours)), "transformers": (hf_step, hf, make_opt(hf))}
    for step, model, opt in runs.values():  # warm-up (and compilation)
        time_steps(step, model, opt, x, y, 2)
    times = {k: [] for k in runs}
    for _ in range(rounds):
        for k, (step, model, opt) in runs.items():
            times[k].append(time_steps(step, model, opt, x, y, steps))
    tokens = batch * cfg.seq_len
    res = {k: tokens / statistics.median(v) for k, v in times.items()}
    res["ratio"] = res["hyperclova"] / res["transformers"]
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="torch.compile our model (inductor)")
    p.add_argument("--cases", nargs="*", default=list(CASES))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, compile={args.compile}")
    print("| case | batch x seq | hyperclova tok/s | transformers tok/s | ratio |")
    print("|---|---|---|---|---|")
    for name in args.cases:
        r = bench_case(name, args.rounds, args.steps, args.compile)
        cfg, batch = CASES[name]
        print(f"| {name} | {batch} x {cfg.seq_len} | {r['hyperclova']:,.0f} | {r['transformers']:,.0f} "
              f"| {r['ratio']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
