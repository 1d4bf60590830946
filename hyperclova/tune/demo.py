"""`make tune-demo`: P-tuning, LoRA and full fine-tuning of the demo checkpoint against its
few-shot score, on the offline demo tasks of `make eval-demo` (a Table 4-shaped comparison).

From held-out generated documents (hyperclova/eval/demo.py) it writes the KLUE-YNAT-format topic
files and the NSMC-format sentiment files with their task files, then for each task:

- few-shot: the evaluation demo's protocol (2 demonstrations, 3 runs);
- P-tuning, LoRA and full fine-tuning of the demo model on the training file (200 examples),
  scored zero-shot on the same test file (`python -m hyperclova.eval --adapter`).

The tasks are scored the channel way, P(text | label word), as the evaluation demo scores them (a
model this small has learnt how text under a heading continues, not to name a heading after the
text), so the tuning is channel prompt tuning (docs/tune.md). It prints one row per method with
its trainable-parameter count; every step is printed as the command it runs.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from hyperclova.eval.demo import build_demo_tasks, run

METHODS = {  # learning rates picked on the demo's training files
    "P-tuning": ["tune.method=ptuning", "train.lr=1e-2"],
    "LoRA": ["tune.method=lora", "tune.lora.rank=8", "tune.lora.targets=[qkv,proj]",
             "train.lr=3e-3"],
    "full fine-tuning": ["tune.method=full", "train.lr=3e-4"],
}
COMMON = ["train.global_batch_size=16", "train.micro_batch_size=16", "schedule.warmup_steps=30",
          "schedule.min_lr_ratio=0.0", "optim.weight_decay=0.0", "train.eval_interval=0",
          "checkpoint.interval=0", "logging.log_interval=50", "logging.progress_bar=false",
          "logging.tensorboard=false"]
METRIC = {"topic": ("macro_f1", "demo_topic (macro-F1)"),
          "sentiment": ("accuracy", "demo_sentiment (accuracy)")}
FEW_SHOT = "few-shot (2-shot, 3 runs)"


def score(path: Path, name: str) -> float:
    return json.loads(path.read_text(encoding="utf-8"))["metrics"][METRIC[name][0]]["mean"]


def trainable(checkpoint: str, method: list[str]) -> str:
    from hyperclova.tune.trainer import describe_trainable, tune_config

    return describe_trainable(tune_config(None, checkpoint, method + ["tune.task=nsmc"])).split(" ")[0]


def table(rows: dict[str, dict[str, float]], counts: dict[str, str]) -> str:
    lines = ["| method | trainable parameters | " + " | ".join(h for _, h in METRIC.values()) + " |",
             "|---|---|" + "---|" * len(METRIC)]
    for method, r in rows.items():
        lines.append(f"| {method} | {counts[method]} | "
                     + " | ".join(f"{r[name]:.1f}" for name in METRIC) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m hyperclova.tune.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="demo_out/run/checkpoints")
    p.add_argument("--out", default="demo_out/tune")
    p.add_argument("--steps", type=int, default=300, help="tuning steps per method and task")
    args = p.parse_args(argv)
    out = Path(args.out)
    py = sys.executable
    tasks = build_demo_tasks(out)  # the evaluation demo's files and task YAMLs
    rows: dict[str, dict[str, float]] = {FEW_SHOT: {}}
    counts = {FEW_SHOT: "0", "majority class": "-"}
    for name, task in tasks.items():
        res = out / f"fewshot_{name}.json"
        run([py, "-m", "hyperclova.eval", "--checkpoint", args.checkpoint, "--task", str(task),
             "--output", str(res)])
        rows[FEW_SHOT][name] = score(res, name)
        baseline = json.loads(res.read_text(encoding="utf-8"))["majority_baseline"]
        rows.setdefault("majority class", {})[name] = baseline[METRIC[name][0]]
    for method, overrides in METHODS.items():
        counts[method] = trainable(args.checkpoint, overrides)
        key = method.split()[0].lower()
        for name, task in tasks.items():
            run_dir = out / "runs" / f"{name}_{key}"
            shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run each time, not a resume
            run([py, "-m", "hyperclova.tune", "--checkpoint", args.checkpoint, f"tune.task={task}",
                 *overrides, *COMMON, f"train.steps={args.steps}", f"logging.run_dir={run_dir}"])
            res = out / f"{name}_{key}.json"
            run([py, "-m", "hyperclova.eval", "--adapter", str(run_dir / "checkpoints"),
                 "--task", str(task), "--output", str(res)])
            rows.setdefault(method, {})[name] = score(res, name)
    rows["majority class"] = rows.pop("majority class")  # last
    text = table(rows, counts)
    (out / "report.md").write_text(text, encoding="utf-8")
    print("\n" + text)


if __name__ == "__main__":
    main()
