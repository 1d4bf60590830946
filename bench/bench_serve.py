"""Serving throughput and latency under load: continuous batching vs one-at-a-time vs static batching.

    OMP_NUM_THREADS=1 python bench/bench_serve.py --model tiny --clients 1 4 16 64
    OMP_NUM_THREADS=1 python bench/bench_serve.py --model wide --clients 1 4 16 64

For each scheduler (`continuous`, the server's default, and `static`: wait for a full batch, decode
it to its end) a real `python -m hyperclova.serve` process is started on loopback with random
weights (speed does not depend on them; `ignore_eos` fixes every output length), and C clients
(asyncio + aiohttp, one process) each send requests back to back, streaming. The workload is fixed
by a seed: prompts of 8-64 tokens, outputs of 16-128 tokens, sampled with `python -m
hyperclova.generate`'s defaults (temperature 0.8, top-k 50, top-p 0.95). Reported per (scheduler, C):
generated tokens/s (counted by `usage`), requests/s, time to first token p50/p95 and inter-token
latency p50/p95 over requests (each request's time per output token after its first: the time from
its first to its last chunk over its tokens - 1), and tokens per CPU-second of the server process
(steadier than wall time on a shared machine). The one-at-a-time rate is the
C=1 row of the continuous server; "x" columns compare with it. Both servers run at once and every
(round, client count) point is measured on each in turn; the median of --rounds rounds is reported
(other jobs on a shared machine hit all points alike). `--baseline REV` adds a third server, the
continuous scheduler of an older tree of this repository (`git archive REV`), measured in turn
with the others: a before/after comparison in one run. "client CPU" is what the load generator
itself used per server CPU-second (it shares the machine's cores with the server); "server busy"
is the server's CPU time over wall time and "waiting for a CPU" the time its thread was ready to
run but had no core (/proc/PID/schedstat): on a shared machine the sum falls short of 100% only
when the server had nothing to do.

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
        out.append({"prompt": ids, "max_tokens": rng.randint(16, 128), "temperature": 0.8, "top_k": 50, "top_p": 0.95,
                    "stream": True, "ignore_eos": True, "seed": rng.randint(0, 10**6)})
    return out


async def one_request(session, url: str, body: dict) -> tuple[float, float, int]:
    """(time to first token, time per output token after the first, tokens) of one streamed
    request; the token count is the final chunk's `usage`."""
    t0 = time.perf_counter()
    first = last = None
    tokens = 0
    async with session.post(url, json=body) as r:
        r.raise_for_status()
        async for line in r.content:
            if line.startswith(b"data: {"):
                chunk = json.loads(line[6:])
                now = time.perf_counter()
                if chunk["choices"] and (chunk["choices"][0]["text"] or chunk["choices"][0]["finish_reason"]):
                    first = first or now
                    last = now
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
    return first - t0, (last - first) / max(tokens - 1, 1), tokens


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def run_delay(pid: int) -> float:
    """Seconds the server's main thread spent runnable but waiting for a CPU (schedstat)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


async def load(base: str, clients: int, jobs: list[dict], pid: int) -> dict:
    import aiohttp

    queue = list(reversed(jobs))
    ttft, itl, tokens = [], [], 0
    conn = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=3600)) as s:
        async def client():
            nonlocal tokens
            while queue:
                body = queue.pop()
                first, per_token, n = await one_request(s, base + "/v1/completions", body)
                ttft.append(first)
                itl.append(per_token)
                tokens += n
        t0, cpu0, own0, wait0 = time.perf_counter(), cpu_seconds(pid), time.process_time(), run_delay(pid)
        await asyncio.gather(*(client() for _ in range(clients)))
        wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
        starved = run_delay(pid) - wait0
        own = time.process_time() - own0
    q = lambda xs, p: statistics.quantiles(xs, n=100)[p - 1] if len(xs) > 1 else xs[0]
    return {"tok_s": tokens / wall, "req_s": len(jobs) / wall, "ttft50": q(ttft, 50), "ttft95": q(ttft, 95),
            "itl50": q(itl, 50), "itl95": q(itl, 95), "wall": wall, "tokens": tokens,
            "tok_cpu": tokens / max(cpu, 1e-9), "server_busy": cpu / wall, "client_cpu": own / max(cpu, 1e-9),
            "starved": starved / wall}


def serve(tok: Path, weights: Path, scheduler: str, max_batch: int, port: int,
          tree: Path = ROOT) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.Popen([sys.executable, "-m", "hyperclova.serve", "--checkpoint", str(weights),
                             "--tokenizer", str(tok), "--port", str(port), "--max-batch", str(max_batch),
                             "--max-queue", "4096", "--scheduler", scheduler, "--filter-config", "none",
                             "--log-level", "warning"], env=env, cwd=tree)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("server exited")
            time.sleep(0.2)
    raise TimeoutError("server did not start")


def engine_only(tok_dir: Path, weights: Path, clients: list[int], rounds: int, per_client: int) -> None:
    """The same workload through the engine alone, in this process (no HTTP, no client): C
    sequences kept running, each replaced by the next job as it finishes; tokens per CPU-second
    of this process. Separates what batching buys in the model and sampler from the serving
    path's per-token costs (text, events, server-sent events, socket writes)."""
    import torch

    from hyperclova.generate import Sampling, load_model
    from hyperclova.serve.batching import BatchEngine, SeqRequest
    from hyperclova.serve.text import TextStream
    from hyperclova.tokenizer import load_tokenizer

    torch.set_num_threads(1)
    tok, (model, _) = load_tokenizer(tok_dir), load_model(str(weights))

    async def run(c: int, jobs: list[dict]) -> tuple[int, float]:
        engine = BatchEngine(model, tok.vocab_size, max_batch=64, max_queue=4096)
        queue, tokens, done = list(reversed(jobs)), [0], asyncio.Event()
        active = [0]

        def submit():
            j = queue.pop()
            s = Sampling.for_tokenizer(tok, max_new_tokens=j["max_tokens"], temperature=j["temperature"],
                                       top_k=j["top_k"], top_p=j["top_p"])
            s.suppress_ids, s.eod_id = tuple(sorted({*s.suppress_ids, tok.eod_id})), None  # ignore_eos
            active[0] += 1

            def emit(ev):
                tokens[0] += len(ev.tokens)
                if ev.finish_reason:
                    active[0] -= 1
                    if queue:
                        submit()
                    elif not active[0]:
                        done.set()
            engine.submit([SeqRequest(j["prompt"], s, emit, TextStream(tok),
                                      generator=torch.Generator().manual_seed(j["seed"]))])

        task = asyncio.create_task(engine.serve_forever())
        cpu0 = time.process_time()
        for _ in range(min(c, len(queue))):
            submit()
        await done.wait()
        cpu = time.process_time() - cpu0
        engine.close()
        await task
        return tokens[0], cpu

    asyncio.run(run(4, workload(tok_dir, 8, seed=99)))  # warm-up
    rates: dict[int, list[float]] = {}
    for rnd in range(rounds):
        for c in clients:
            n, cpu = asyncio.run(run(c, workload(tok_dir, max(8, per_client * c), seed=c)))
            rates.setdefault(c, []).append(n / cpu)
            print(f"engine only round {rnd} C={c:3d} {n / cpu:8.0f} tok/CPU-s", flush=True)
    print("\n| concurrent sequences | engine tokens per CPU-s | x (median of per-round ratios) |\n|---|---|---|")
    for c in clients:
        x = statistics.median(a / b for a, b in zip(rates[c], rates[clients[0]]))
        print(f"| {c} | {statistics.median(rates[c]):,.0f} | {x:.1f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(MODELS), default="tiny")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--schedulers", nargs="+", default=["continuous", "static"])
    p.add_argument("--requests-per-client", type=int, default=4, help="at least 8 requests per run")
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds over all client counts (alternating); the median round is reported")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--workdir", default="/tmp/bench_serve")
    p.add_argument("--port", type=int, default=8431)
    p.add_argument("--baseline", metavar="REV",
                   help="also measure the continuous server of git revision REV (before/after)")
    p.add_argument("--engine-only", action="store_true",
                   help="measure the engine in this process without HTTP (tokens per CPU-second)")
    args = p.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    tok, weights = prepare(work, args.model)
    if args.engine_only:
        return engine_only(tok, weights, args.clients, args.rounds, args.requests_per_client)
    results: dict[tuple[str, int], list[dict]] = {}
    # One server per scheduler, all started first; every (round, clients) point then runs against
    # each of them in turn, so load from other jobs hits both schedulers alike. An idle server
    # costs nothing.
    servers = {sched: serve(tok, weights, sched, args.max_batch, args.port + i)
               for i, sched in enumerate(args.schedulers)}
    if args.baseline:
        from before_after import checkout

        tree = checkout(args.baseline, work / f"tree_{args.baseline}")
        servers[f"continuous@{args.baseline}"] = serve(tok, weights, "continuous", args.max_batch,
                                                       args.port + len(servers), tree)
    names = list(servers)
    try:
        for i, (sched, proc) in enumerate(servers.items()):  # warm-up
            asyncio.run(load(f"http://127.0.0.1:{args.port + i}", 4, workload(tok, 8, seed=99), proc.pid))
        for rnd in range(args.rounds):
            for c in args.clients:
                jobs = workload(tok, max(8, args.requests_per_client * c), seed=c)
                for i, (sched, proc) in enumerate(servers.items()):
                    r = asyncio.run(load(f"http://127.0.0.1:{args.port + i}", c, jobs, proc.pid))
                    results.setdefault((sched, c), []).append(r)
                    print(f"{sched:10s} round {rnd} C={c:3d} {r['tok_s']:8.0f} tok/s {r['tok_cpu']:6.0f} tok/CPU-s "
                          f"{r['req_s']:6.2f} req/s TTFT {1e3 * r['ttft50']:.0f}/{1e3 * r['ttft95']:.0f} ms "
                          f"ITL {1e3 * r['itl50']:.1f}/{1e3 * r['itl95']:.1f} ms server busy "
                          f"{r['server_busy']:.0%} waiting for a CPU {r['starved']:.0%} client CPU "
                          f"{r['client_cpu']:.2f}", flush=True)
    finally:
        for proc in servers.values():
            proc.terminate()
            proc.wait(30)
    rows = [(s, c, sorted(results[s, c], key=lambda r: r["tok_s"])[len(results[s, c]) // 2])
            for s in names for c in args.clients]
    def ratio(s: str, c: int, key: str) -> str:
        """Median over rounds of (this point / the reference's C=1 point of the same round): the
        two ran minutes apart, not a whole run apart, so drifting machine load cancels better."""
        ref = s if "@" in s else ("continuous" if ("continuous", 1) in results else s)
        if (ref, 1) not in results:
            return "-"
        return f"{statistics.median(a[key] / b[key] for a, b in zip(results[s, c], results[ref, 1])):.1f}"

    print(f"\nmodel {args.model}; medians of {args.rounds} rounds; x = median over rounds of the ratio to the "
          f"continuous server's one-at-a-time (C=1) rate in the same round (continuous@REV: to its own)\n")
    print("| scheduler | clients | tokens/s | x | tokens per server CPU-s | x | requests/s | "
          "TTFT p50 / p95 (ms) | ITL p50 / p95 (ms) | server busy / waiting for a CPU | client CPU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for s, c, r in rows:
        x, xc = ratio(s, c, "tok_s"), ratio(s, c, "tok_cpu")
        print(f"| {s} | {c} | {r['tok_s']:,.0f} | {x} | {r['tok_cpu']:,.0f} | {xc} | {r['req_s']:.2f} | "
              f"{1e3 * r['ttft50']:.0f} / {1e3 * r['ttft95']:.0f} | {1e3 * r['itl50']:.1f} / {1e3 * r['itl95']:.1f} | "
              f"{r['server_busy']:.0%} / {r['starved']:.0%} | {r['client_cpu']:.2f} |")


if __name__ == "__main__":
    main()
