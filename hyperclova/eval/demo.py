"""`make eval-demo`: few-shot evaluation of the demo checkpoint on files built offline.

From *held-out* generated documents (the embedded generator with another seed than the demo
corpus: new documents, the same templates and word lists) it writes, in the official formats:

- `ynat_train.json` / `ynat_test.json` — a KLUE-YNAT-format topic file: `title` is the headline
  of a news post, `label` its category (the generator's ten topics, not YNAT's seven);
- `ratings_train.txt` / `ratings_test.txt` — an NSMC-format sentiment file: `document` is the
  body of a review, `label` 1 for 4-5 stars and 0 for 1-2 stars (3 stars left out, as NSMC does),
  balanced like NSMC;

plus a task YAML for each (`demo_topic.yaml`, `demo_sentiment.yaml`), then evaluates the
checkpoint on both with `python -m hyperclova.eval` and prints the Table 3-shaped report next to
the majority-class baseline.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import shlex
import subprocess
import sys
from pathlib import Path

from hyperclova.corpus.jsonl import write_json_atomic
from hyperclova.corpus.lexicon import TOPICS

_NEWS = re.compile(r"^\[(.+?)\] (.+?)\n")
_REVIEW = re.compile(r"^별점 [★☆]+ \((\d)점\)\n(.+)$", re.S)

TOPIC_TASK = """\
# Demo topic task (KLUE-YNAT format): the generator's ten topics. A model this small does not
# learn in context; scored the channel way, P(headline | "[topic]"), it uses what it learned from
# the corpus's news posts, which open with "[topic] headline".
task: demo_topic
format: ynat
options: {{labels: {labels}}}
data_files: {{train: ynat_train.json, test: ynat_test.json}}
output_type: multiple_choice
scoring: channel
doc_to_text: "{{{{title}}}}"
doc_to_target: "{{{{label}}}}"
doc_to_choice: {choices}
num_fewshot: 2
runs: 3
metric: macro_f1
"""
SENTIMENT_TASK = """\
# Demo sentiment task (NSMC format): review bodies with their polarity, scored the channel way
# after the corpus's star line, P(review | "별점 ★★★★★ (5점)") against the 1-star line.
task: demo_sentiment
format: nsmc
data_files: {train: ratings_train.txt, test: ratings_test.txt}
output_type: multiple_choice
scoring: channel
target_delimiter: "\\n"
doc_to_text: "{{document}}"
doc_to_target: "{{label}}"
doc_to_choice: {0: "별점 ★☆☆☆☆ (1점)", 1: "별점 ★★★★★ (5점)"}
num_fewshot: 2
runs: 3
metric: accuracy
"""


def build_demo_tasks(out: Path, n_docs: int = 12000, seed: int = 1, n_test: int = 200,
                     n_train: int = 200) -> dict[str, Path]:
    from hyperclova.corpus.synthetic import iter_documents

    out.mkdir(parents=True, exist_ok=True)
    topics, reviews = [], {0: [], 1: []}
    for rec, _ in iter_documents(n_docs, seed):
        if rec["source"] == "news" and (m := _NEWS.match(rec["text"])):
            topics.append({"guid": f"demo-ynat_{len(topics):05d}", "title": m.group(2),
                           "label": rec["category"]})
        elif rec["source"] == "review" and (m := _REVIEW.match(rec["text"])):
            stars = int(m.group(1))
            if stars != 3:
                reviews[int(stars >= 4)].append((rec["id"], m.group(2).replace("\n", " ")))
    rng = random.Random(seed)
    rng.shuffle(topics)
    write_json_atomic(out / "ynat_test.json", topics[:n_test])
    write_json_atomic(out / "ynat_train.json", topics[n_test:n_test + n_train])
    half = min(len(reviews[0]), len(reviews[1]), (n_test + n_train) // 2)
    rows = [(rid, doc, lab) for lab in (0, 1) for rid, doc in reviews[lab][:half]]
    rng.shuffle(rows)
    split = min(n_test, len(rows) // 2)
    for name, part in (("ratings_test.txt", rows[:split]), ("ratings_train.txt", rows[split:])):
        lines = ["id\tdocument\tlabel"] + [f"{rid}\t{doc}\t{lab}" for rid, doc, lab in part]
        (out / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    names = list(TOPICS)
    (out / "demo_topic.yaml").write_text(TOPIC_TASK.format(
        labels=json.dumps(names, ensure_ascii=False),
        choices=json.dumps({n: f"[{n}]" for n in names}, ensure_ascii=False)), encoding="utf-8")
    (out / "demo_sentiment.yaml").write_text(SENTIMENT_TASK, encoding="utf-8")
    return {"topic": out / "demo_topic.yaml", "sentiment": out / "demo_sentiment.yaml"}


def run(cmd: list[str]) -> None:
    print("\n$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m hyperclova.eval.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="demo_out/run/checkpoints")
    p.add_argument("--out", default="demo_out/eval")
    args = p.parse_args(argv)
    out = Path(args.out)
    tasks = build_demo_tasks(out)
    results = []
    for name, task in tasks.items():
        res = out / f"{name}.json"
        run([sys.executable, "-m", "hyperclova.eval", "--checkpoint", args.checkpoint,
             "--task", str(task), "--output", str(res)])
        results.append(str(res))
    run([sys.executable, "-m", "hyperclova.cli.eval_report", *results, "--baseline",
         "--output", str(out / "report.md")])


if __name__ == "__main__":
    main()
