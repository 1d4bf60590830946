"""`make demo`: a Korean GPT built end to end on a CPU in minutes.

corpus -> tokenizer -> Megatron shards -> training `tiny` -> checkpoint -> generated text -> loss PNG.
Each stage is the same command a user runs on their own corpus (`python -m hyperclova.cli.X` is
`python tools/X.py` in a checkout and the `hyperclova-x` console script once installed); the demo
prints it before running it, so the log doubles as a recipe (see README, "Your own corpus"). It runs
from an installed package too: the config is the shipped `demo`.
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

PROMPTS = ["오늘 서울의 날씨는", "이 제품을 사용해 보니", "질문: 주말에 가볼 만한 곳", "정부는 이번 발표에서"]


def run(cmd: list[str]) -> None:
    print("\n$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m hyperclova.demo", description=__doc__)
    p.add_argument("--out", default="demo_out")
    p.add_argument("--docs", type=int, default=20000, help="documents in the generated corpus")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--tokenizer-type", default="morpheme-bbpe")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)

    out = Path(args.out)
    py = sys.executable
    corpus, tok, shards, run_dir = out / "corpus.jsonl", out / "tokenizer", out / "data", out / "run"
    prefix = shards / "corpus"
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run each time, not a resume
    t0 = time.perf_counter()
    # A rerun replaces the previous demo's outputs: --overwrite says so explicitly.
    run([py, "-m", "hyperclova.cli.generate_corpus", "--output", str(corpus), "--docs", str(args.docs), "--seed", "0"])
    run([py, "-m", "hyperclova.cli.train_tokenizer", "--input", str(corpus), "--output", str(tok), "--overwrite",
         "--type", args.tokenizer_type, "--vocab-size", str(args.vocab_size), "--workers", str(args.workers)])
    run([py, "-m", "hyperclova.cli.preprocess_data", "--input", str(corpus), "--output-prefix", str(prefix),
         "--tokenizer", str(tok), "--workers", str(args.workers), "--append-eod", "--overwrite"])
    run([py, "-m", "hyperclova.train", "--config", "demo",
         f"data.blend=[{prefix}_text_document]", f"data.tokenizer={tok}",
         f"logging.run_dir={run_dir}", f"train.steps={args.steps}"])
    run([py, "-m", "hyperclova.generate", "--checkpoint", str(run_dir / "checkpoints"),
         "--max-new-tokens", "48", "--seed", "0"] + [a for t in PROMPTS for a in ("--prompt", t)])
    run([py, "-m", "hyperclova.cli.plot_metrics", str(run_dir / "metrics.jsonl"), "--output", str(out / "loss.png")])
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s; loss curve: {out / 'loss.png'}")


if __name__ == "__main__":
    main()
