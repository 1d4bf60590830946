"""Serving throughput and latency under load: continuous batching vs one-at-a-time vs static batching.

    OMP_NUM_THREADS=1 python bench/bench_serve.py --model tiny --clients 1 4 16 64
    OMP_NUM_THREADS=1 python bench/bench_serve.py --model wide --clients 1 4 16 64

For each scheduler (`continuous`, the server's default, and `static`: wait for a full batch, decode
it to its end) a real `python -m hyperclova.serve` process is started on loopback with random
weights (speed does not depend on them; `ignore_eos` fixes every output length), and C clients
(asyncio + aiohttp, one process) each send requests back to back, streaming. The workload is fixed
by a seed: prompts of 8-64 tokens, outputs of 16-128 tokens. Reported per (scheduler, C):
generated tokens/s, requests/s, time to first token p50/p95 and inter-token latency p50/p95 (from
chunk arrival times; `logprobs: 0` makes every token its own chunk). The one-at-a-time rate is the
C=1 row of the same server; "x" columns compare with it.

Models: `tiny` is the tiny preset (4 layers, d 128, vocab 4096, context 256); `wide` has 137M's
width (d 768, 16 heads) with 4 layers, vocab 4096, context 512. The tokenizer (morpheme-aware
BBPE, 4096) is trained once on the embedded synthetic corpus and cached under --workdir.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "tiny": ["model=tiny"],
    "wide": ["model=137m", "model.n_layers=4", "model.vocab_size=4096", "model.seq_len=512"],
}


def prepare(workdir: Path, model: str) -> tuple[Path, Path]:
    """(tokenizer dir, consolidated model file) with random weights."""
    sys.path.insert(0, str(ROOT))
    import torch
    from safetensors.torch import save_file

    from hyperclova.config import load_config, to_dict
    from hyperclova.convert.hf import TIED_KEY
    from hyperclova.convert.to_hf import CONFIG_METADATA_KEY
    from hyperclova.model.gpt import build_model

    tok = workdir / "tokenizer"
    if not (tok / "hyperclova_tokenizer.json").is_file():
        from hyperclova.corpus.synthetic import generate_corpus
        from hyperclova.tokenizer import train_tokenizer

        generate_corpus(workdir / "corpus.jsonl", n_docs=3000, seed=0)
        train_tokenizer([str(workdir / "corpus.jsonl")], str(tok), vocab_size=4096, show_progress=False,
                        verify_docs=100)
    weights = workdir / f"{model}.safetensors"
    if not weights.is_file():
        mc = load_config(None, MODELS[model]).model
        m = build_model(mc, seed=0)
        sd = {k: v.contiguous() for k, v in m.state_dict().items() if k != TIED_KEY}
        save_file(sd, str(weights), metadata={"format": "pt", CONFIG_METADATA_KEY: json.dumps(to_dict(mc))})
        del m
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return tok, weights


def workload(tok_dir: Path, n: int, seed: int = 0) -> list[dict]:
    from hyperclova.corpus.synthetic import iter_documents
    from hyperclova.tokenizer import load_tokenizer

    tok = load_tokenizer(tok_dir)
    rng = random.Random(seed)
    docs = [rec["text"] for rec, _ in iter_documents(200, seed=1)]
    out = []
    for _ in range(n):
        ids = tok.encode(rng.choice(docs))
        ids = (ids * 8)[: rng.randint(8, 64)]
        out.append({"prompt": ids, "max_tokens": rng.randint(16, 128), "temperature": 0.8, "top_p": 0.95,
                    "stream": True, "ignore_eos": True, "logprobs": 0, "seed": rng.randint(0, 10**6)})
    return out


async def one_request(session, url: str, body: dict) -> tuple[float, list[float], int]:
    """(time to first token, gaps between tokens, tokens) of one streamed request."""
    t0 = time.perf_counter()
    times = []
    async with session.post(url, json=body) as r:
        r.raise_for_status()
        async for line in r.content:
            if line.startswith(b"data: {"):
                chunk = json.loads(line[6:])
                for c in chunk["choices"]:
                    if c.get("logprobs"):
                        times.extend([time.perf_counter()] * len(c["logprobs"]["tokens"]))
    gaps = [b - a for a, b in zip(times, times[1:])]
    return times[0] - t0, gaps, len(times)


async def load(base: str, clients: int, jobs: list[dict]) -> dict:
    import aiohttp

    queue = list(reversed(jobs))
    ttft, itl, tokens = [], [], 0
    conn = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=3600)) as s:
        async def client():
            nonlocal tokens
            while queue:
                body = queue.pop()
                first, gaps, n = await one_request(s, base + "/v1/completions", body)
                ttft.append(first)
                itl.extend(gaps)
                tokens += n
        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - t0
    q = lambda xs, p: statistics.quantiles(xs, n=100)[p - 1] if len(xs) > 1 else xs[0]
    return {"tok_s": tokens / wall, "req_s": len(jobs) / wall, "ttft50": q(ttft, 50), "ttft95": q(ttft, 95),
            "itl50": q(itl, 50), "itl95": q(itl, 95), "wall": wall, "tokens": tokens}


def serve(tok: Path, weights: Path, scheduler: str, max_batch: int, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.Popen([sys.executable, "-m", "hyperclova.serve", "--checkpoint", str(weights),
                             "--tokenizer", str(tok), "--port", str(port), "--max-batch", str(max_batch),
                             "--max-queue", "4096", "--scheduler", scheduler, "--filter-config", "none",
                             "--log-level", "warning"], env=env, cwd=ROOT)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("server exited")
            time.sleep(0.2)
    raise TimeoutError("server did not start")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(MODELS), default="tiny")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--schedulers", nargs="+", default=["continuous", "static"])
    p.add_argument("--requests-per-client", type=int, default=4, help="at least 8 requests per run")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--workdir", default="/tmp/bench_serve")
    p.add_argument("--port", type=int, default=8431)
    args = p.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    tok, weights = prepare(work, args.model)
    rows = []
    for sched in args.schedulers:
        proc = serve(tok, weights, sched, args.max_batch, args.port)
        try:
            base = f"http://127.0.0.1:{args.port}"
            asyncio.run(load(base, 4, workload(tok, 8, seed=99)))  # warm-up
            for c in args.clients:
                jobs = workload(tok, max(8, args.requests_per_client * c), seed=c)
                r = asyncio.run(load(base, c, jobs))
                rows.append((sched, c, r))
                print(f"{sched:10s} C={c:3d} {r['tok_s']:8.0f} tok/s {r['req_s']:6.2f} req/s "
                      f"TTFT {1e3 * r['ttft50']:.0f}/{1e3 * r['ttft95']:.0f} ms "
                      f"ITL {1e3 * r['itl50']:.1f}/{1e3 * r['itl95']:.1f} ms", flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
    one = {s: r["tok_s"] for s, c, r in rows if c == 1}
    base_rate = one.get("continuous", next(iter(one.values()), None))
    print(f"\nmodel {args.model}; x = tokens/s over the continuous server's one-at-a-time (C=1) rate\n")
    print("| scheduler | clients | tokens/s | x | requests/s | TTFT p50 / p95 (ms) | ITL p50 / p95 (ms) |")
    print("|---|---|---|---|---|---|---|")
    for s, c, r in rows:
        x = f"{r['tok_s'] / base_rate:.1f}" if base_rate else "-"
        print(f"| {s} | {c} | {r['tok_s']:,.0f} | {x} | {r['req_s']:.2f} | {1e3 * r['ttft50']:.0f} / "
              f"{1e3 * r['ttft95']:.0f} | {1e3 * r['itl50']:.1f} / {1e3 * r['itl95']:.1f} |")


if __name__ == "__main__":
    main()
