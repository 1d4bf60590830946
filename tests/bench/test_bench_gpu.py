"""bench/bench_gpu.py's CPU smoke mode: every section runs and writes its JSON line (the GPU
numbers themselves need a GPU; docs/benchmarks.md says which were measured)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_smoke_mode_writes_every_kind_of_line(tmp_path):
    out = tmp_path / "bench.jsonl"
    proc = subprocess.run([sys.executable, "bench/bench_gpu.py", "--smoke", "--presets", "350m",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    kinds = [r["kind"] for r in rows]
    assert kinds[:3] == ["env", "gemm", "equality"] and "error" not in kinds, rows
    assert rows[2]["equal_within_1e4"]
    train = {(r["impl"], r["recompute"]) for r in rows if r["kind"] == "train"}
    assert train == {("hyperclova", "none"), ("hyperclova", "selective"), ("hf_gpt2", "none")}
    assert all(r["tokens_per_s"] > 0 and r["mfu_vs_gemm"] > 0 for r in rows if r["kind"] == "train")
    assert {"kind": "skip", "case": "megatron_core 350m", "reason": "needs CUDA"}.items() <= rows[-1].items()
