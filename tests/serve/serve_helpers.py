"""Shared builders for the serving tests: a small Korean model trained in the session, and a live
`python -m hyperclova.serve` process on a free loopback port."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-key-123"
# The model's vocabulary (1024) is padded past the tokenizer's (800), as training pads it.
MODEL_OVERRIDES = ["model.n_layers=2", "model.d_model=64", "model.n_heads=4", "model.vocab_size=1024",
                   "model.seq_len=128"]


@dataclass
class Trained:
    root: Path
    corpus: Path
    tokenizer: Path
    checkpoint: Path  # the run's checkpoint dir (with `latest`)


def train_small_model(root: Path, steps: int = 40) -> Trained:
    """Synthetic Korean corpus -> morpheme-aware BBPE (800 ids) -> shards -> a 2-layer GPT
    trained for `steps` steps: enough for Korean-looking greedy text, seconds on a CPU."""
    from hyperclova.config import load_config
    from hyperclova.corpus.synthetic import generate_corpus
    from hyperclova.data.serialize import preprocess
    from hyperclova.tokenizer import train_tokenizer
    from hyperclova.train.trainer import train

    corpus, tok = root / "corpus.jsonl", root / "tok"
    generate_corpus(corpus, n_docs=800, seed=0)
    train_tokenizer([str(corpus)], str(tok), vocab_size=800, show_progress=False, verify_docs=50)
    preprocess([str(corpus)], str(root / "data" / "corpus"), str(tok), append_eod=True, progress=False)
    cfg = load_config(None, MODEL_OVERRIDES + [
        f"data.blend=[{root / 'data' / 'corpus_text_document'}]", f"data.tokenizer={tok}",
        f"data.cache_dir={root / 'cache'}", f"train.steps={steps}", "train.global_batch_size=16",
        "train.micro_batch_size=16", "train.lr=3e-3", "train.eval_interval=0", "checkpoint.interval=0",
        "schedule.warmup_steps=4", f"logging.run_dir={root / 'run'}", "logging.progress_bar=false",
        "logging.tensorboard=false", "logging.log_interval=100"])
    train(cfg)
    return Trained(root, corpus, tok, root / "run" / "checkpoints")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m hyperclova.serve ...` as a user starts it, on 127.0.0.1:<free port>."""

    def __init__(self, args: list[str], env: dict | None = None, log_path: Path | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
        self._log = open(log_path, "w") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen([sys.executable, "-m", "hyperclova.serve", "--port", str(self.port),
                                      "--log-level", "warning", *args],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT)

    def wait_ready(self, timeout: float = 90) -> "ServerProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"server not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path else ""

    def get_json(self, path: str) -> dict:
        with urllib.request.urlopen(self.base + path, timeout=10) as r:
            return json.loads(r.read())

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not subprocess.DEVNULL:
            self._log.close()


def metric(text: str, name: str, labels: str = "") -> float:
    """The value of one Prometheus sample (0 when absent)."""
    key = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.split()[-1])
    return 0.0
