"""`make tune-demo`: P-tuning, LoRA and full fine-tuning of the demo checkpoint against its
few-shot score, on the offline demo tasks of `make eval-demo` (a Table 4-shaped comparison).

From held-out generated documents (hyperclova/eval/demo.py) it writes the KLUE-YNAT-format topic
files and the NSMC-format sentiment files, then for each task:

- few-shot: the evaluation demo's protocol (2 demonstrations, 3 runs, channel scoring);
- P-tuning, LoRA, full fine-tuning of the frozen (or, for full, the whole) demo model on the
  training file, scored zero-shot on the same test file with the label words as verbalizers
  (direct scoring, `python -m hyperclova.eval --adapter`);

and prints one row per method with its trainable-parameter count. Every step is printed as the
command it runs.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from hyperclova.corpus.lexicon import TOPICS

# Direct scoring: P(label word | text). P-tuning replaces the manual prompt words ("주제:") with
# its continuous prompts (tune.doc_to_text below).
TOPIC_TASK = """\
task: demo_topic
format: ynat
options: {{labels: {labels}}}
data_files: {{train: ynat_train.json, test: ynat_test.json}}
output_type: multiple_choice
doc_to_text: "{{{{title}}}}\\n주제:"
doc_to_target: "{{{{label}}}}"
doc_to_choice: {choices}
metric: macro_f1
"""
SENTIMENT_TASK = """\
task: demo_sentiment
format: nsmc
data_files: {train: ratings_train.txt, test: ratings_test.txt}
output_type: multiple_choice
doc_to_text: "{{document}}\\n평가:"
doc_to_target: "{{label}}"
doc_to_choice: {0: 부정, 1: 긍정}
metric: accuracy
"""
INPUT_FIELD = {"topic": "{{title}}", "sentiment": "{{document}}"}
METHODS = {
    "P-tuning": ["tune.method=ptuning", "train.lr=3e-3"],
    "LoRA": ["tune.method=lora", "tune.lora.rank=8", "tune.lora.targets=[qkv,proj]", "train.lr=3e-3"],
    "full fine-tuning": ["tune.method=full", "train.lr=3e-4"],
}
COMMON = ["train.steps=150", "train.global_batch_size=16", "train.micro_batch_size=16",
          "schedule.warmup_steps=15", "schedule.min_lr_ratio=0.0", "optim.weight_decay=0.0",
          "train.eval_interval=0", "checkpoint.interval=0", "logging.log_interval=25",
          "logging.progress_bar=false", "logging.tensorboard=false"]
METRIC = {"topic": "macro_f1", "sentiment": "accuracy"}


def run(cmd: list[str]) -> None:
    print("\n$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True)


def write_direct_tasks(out: Path) -> dict[str, Path]:
    names = list(TOPICS)
    topic = out / "demo_topic_direct.yaml"
    topic.write_text(TOPIC_TASK.format(labels=json.dumps(names, ensure_ascii=False),
                                       choices=json.dumps({n: n for n in names}, ensure_ascii=False)),
                     encoding="utf-8")
    sentiment = out / "demo_sentiment_direct.yaml"
    sentiment.write_text(SENTIMENT_TASK, encoding="utf-8")
    return {"topic": topic, "sentiment": sentiment}


def score(path: Path, key: str) -> float:
    return json.loads(path.read_text(encoding="utf-8"))["metrics"][key]["mean"]


def trainable(checkpoint: str, method: list[str]) -> str:
    from hyperclova.tune.trainer import describe_trainable, tune_config

    return describe_trainable(tune_config(None, checkpoint, method + ["tune.task=nsmc"])).split(" ")[0]


def main(argv: list[str] | None = None) -> None:
    from hyperclova.eval.demo import build_demo_tasks

    p = argparse.ArgumentParser(prog="python -m hyperclova.tune.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="demo_out/run/checkpoints")
    p.add_argument("--out", default="demo_out/tune")
    p.add_argument("--steps", type=int, default=150, help="tuning steps per method and task")
    args = p.parse_args(argv)
    out = Path(args.out)
    py = sys.executable
    fewshot_tasks = build_demo_tasks(out)  # the evaluation demo's files and (channel) tasks
    direct = write_direct_tasks(out)
    rows: dict[str, dict[str, float]] = {"few-shot (2-shot, channel)": {}}
    for name, task in fewshot_tasks.items():
        res = out / f"fewshot_{name}.json"
        run([py, "-m", "hyperclova.eval", "--checkpoint", args.checkpoint, "--task", str(task),
             "--output", str(res)])
        rows["few-shot (2-shot, channel)"][name] = score(res, METRIC[name])
        baseline = json.loads(res.read_text(encoding="utf-8"))["majority_baseline"]
        rows.setdefault("majority class", {})[name] = baseline[METRIC[name]]
    counts = {"few-shot (2-shot, channel)": "0", "majority class": "-"}
    for method, overrides in METHODS.items():
        counts[method] = trainable(args.checkpoint, overrides)
        for name, task in direct.items():
            run_dir = out / "runs" / f"{name}_{method.split()[0].lower()}"
            extra = [f'tune.doc_to_text="{INPUT_FIELD[name]}"'] if method == "P-tuning" else []
            shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run each time, not a resume
            run([py, "-m", "hyperclova.tune", "--checkpoint", args.checkpoint, f"tune.task={task}",
                 *overrides, *COMMON, f"train.steps={args.steps}", f"logging.run_dir={run_dir}",
                 *extra])
            res = out / f"{name}_{method.split()[0].lower()}.json"
            run([py, "-m", "hyperclova.eval", "--adapter", str(run_dir / "checkpoints"),
                 "--task", str(task), "--output", str(res)])
            rows.setdefault(method, {})[name] = score(res, METRIC[name])
    table = ["| method | trainable parameters | demo_topic (macro-F1) | demo_sentiment (accuracy) |",
             "|---|---|---|---|"]
    for method in ["few-shot (2-shot, channel)", *METHODS, "majority class"]:
        r = rows[method]
        table.append(f"| {method} | {counts[method]} | {r['topic']:.1f} | {r['sentiment']:.1f} |")
    text = "\n".join(table) + "\n"
    (out / "report.md").write_text(text, encoding="utf-8")
    print("\n" + text)


if __name__ == "__main__":
    main()
