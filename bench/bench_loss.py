"""Peak memory and time of the output layer + cross-entropy, forward and backward, on CPU:
the plain `F.cross_entropy(h @ W.T)` against the engine's chunked fused version
(hyperclova/parallel/loss.py), at vocabulary 64k, sequence 2048, micro-batch 8, d_model 1024.

    python bench/bench_loss.py            # ~13 GB of RAM for the plain variant

Each variant runs in a fresh process; its peak is the rise of the resident set (VmHWM) over the
process's resident size just before, with a fixed mmap threshold so freed tensors return to the
OS. A second number, the peak of live tensor bytes (hyperclova.parallel.accounting), is device-
independent.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(variant: str, vocab: int, seq: int, batch: int, d: int, chunk: int) -> None:
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(ROOT))
    from hyperclova.parallel.accounting import PeakLiveBytes
    from hyperclova.parallel.loss import linear_cross_entropy

    def status(key):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

    g = torch.Generator().manual_seed(0)
    h = torch.randn(batch, seq, d, generator=g, requires_grad=True)
    w = (torch.randn(vocab, d, generator=g) * 0.02).requires_grad_()
    labels = torch.randint(0, vocab, (batch, seq), generator=g)
    Path("/proc/self/clear_refs").write_text("5")
    before = status("VmRSS")
    t0 = time.perf_counter()
    with PeakLiveBytes() as live:
        if variant == "plain":
            loss = F.cross_entropy((h @ w.T).flatten(0, 1), labels.flatten())
        else:
            loss = linear_cross_entropy(h, w, labels, chunk)
        loss.backward()
    print(json.dumps({"variant": variant, "loss": loss.item(), "seconds": time.perf_counter() - t0,
                      "rss_peak_gib": (status("VmHWM") - before) / 2**30,
                      "live_peak_gib": live.peak / 2**30,
                      "grad_h_norm": h.grad.norm().item(), "grad_w_norm": w.grad.norm().item()}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vocab", type=int, default=64000)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--d-model", type=int, default=1024)
    p.add_argument("--chunk", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child")
    a = p.parse_args()
    if a.child:
        child(a.child, a.vocab, a.seq, a.batch, a.d_model, a.chunk)
        return
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": str(a.threads)}
    rows = []
    for variant in ("chunked", "plain"):
        out = subprocess.run([sys.executable, __file__, "--child", variant, "--vocab", str(a.vocab),
                              "--seq", str(a.seq), "--batch", str(a.batch), "--d-model",
                              str(a.d_model), "--chunk", str(a.chunk)], env=env,
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    c, pl = rows
    print(f"peak RSS {pl['rss_peak_gib']:.2f} -> {c['rss_peak_gib']:.2f} GiB "
          f"({pl['rss_peak_gib'] / c['rss_peak_gib']:.1f}x less); live tensors "
          f"{pl['live_peak_gib']:.2f} -> {c['live_peak_gib']:.2f} GiB "
          f"({pl['live_peak_gib'] / c['live_peak_gib']:.1f}x); time {pl['seconds']:.1f} -> "
          f"{c['seconds']:.1f} s; loss {pl['loss']:.6f} vs {c['loss']:.6f}")


if __name__ == "__main__":
    main()
