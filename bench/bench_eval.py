"""Evaluation throughput (docs/benchmarks.md, "Evaluation"): examples per second for
log-likelihood scoring and greedy generation, batched versus one example at a time, and our
lm-eval model class versus lm-eval's own `hf` model on the same exported checkpoint and task.

    OMP_NUM_THREADS=2 python bench/bench_eval.py --model tiny --examples 64 --rounds 3
    OMP_NUM_THREADS=2 python bench/bench_eval.py --model 137m --examples 16 --rounds 2

Setup (in --workdir): the embedded corpus, a morpheme-aware tokenizer (vocab 4096), a model of the
preset's width with random weights (speed does not depend on the weights) saved as a training
checkpoint and exported with `to-hf`, and an NSMC-format task built from held-out reviews
(4-shot prompts, two label words). Every configuration runs in the same process, alternating
rounds; the median round is reported.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = {"tiny": ["model=tiny"]} | {
    size: [f"model={size}", "model.vocab_size=4096", "model.seq_len=1024"]
    for size in ("137m", "350m", "1.3b")}  # the larger two are for a GPU (--device cuda)


def setup(work: Path, model: str):
    from hyperclova.config import load_config
    from hyperclova.convert.to_hf import to_hf
    from hyperclova.corpus.synthetic import generate_corpus
    from hyperclova.eval.demo import build_demo_tasks
    from hyperclova.model.gpt import build_model
    from hyperclova.tokenizer import train_tokenizer
    from hyperclova.train.checkpoint import CheckpointManager
    from hyperclova.train.engine import ModelState

    tok = work / "tok"
    if not (tok / "tokenizer.json").is_file():
        generate_corpus(work / "corpus.jsonl", n_docs=3000, seed=0)
        train_tokenizer([str(work / "corpus.jsonl")], str(tok), type="morpheme-bbpe",
                        vocab_size=4096, workers=1, show_progress=False, verify_docs=100)
    tasks = build_demo_tasks(work / "tasks")
    ckpt = work / model / "ckpt"
    if not (ckpt / "latest").is_file():
        cfg = load_config(None, MODELS[model] + [f"data.tokenizer={tok}", f"checkpoint.dir={ckpt}"])
        m = build_model(cfg.model, seed=0)
        CheckpointManager(cfg, {"model": ModelState([m])}, log=lambda s: None).save(1)
    hf = work / model / "hf"
    if not (hf / "config.json").is_file():
        to_hf(ckpt, hf, "fp32", tok)
    return str(ckpt), str(hf), str(tok), tasks["sentiment"]


class ForwardOnly:
    """The model seen only through forward_eval (no shared-context cache): what a request costs
    on its own."""

    def __init__(self, plain):
        self.p, self.seq_len, self.dp_rank, self.dp_size = plain, plain.seq_len, 0, 1

    def forward_eval(self, tokens, reduce):
        return self.p.forward_eval(tokens, reduce)


def lm_eval_task_dir(work: Path, task_yaml: Path, n: int) -> Path:
    """The same sentiment task as an lm-eval YAML over JSONL files."""
    from hyperclova.eval.formats import read_examples

    d = work / "lm_eval_tasks"
    d.mkdir(exist_ok=True)
    for split, name in (("train", "ratings_train.txt"), ("test", "ratings_test.txt")):
        ex = read_examples("nsmc", task_yaml.parent / name).items[: n if split == "test" else None]
        with open(d / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for e in ex:
                f.write(json.dumps(e.fields, ensure_ascii=False) + "\n")
    (d / "bench_sentiment.yaml").write_text(
        "task: bench_sentiment\ndataset_path: json\n"
        f"dataset_kwargs: {{data_files: {{train: {d / 'train.jsonl'}, test: {d / 'test.jsonl'}}}}}\n"
        "test_split: test\nfewshot_split: train\noutput_type: multiple_choice\n"
        "doc_to_text: \"{{document}}\\n평가:\"\ndoc_to_target: label\n"
        "doc_to_choice: [별로예요, 좋아요]\nnum_fewshot: 4\nmetric_list:\n  - metric: acc\n",
        encoding="utf-8")
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=list(MODELS), default="tiny")
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gen-tokens", type=int, default=16)
    ap.add_argument("--workdir", default="/tmp/bench_eval")
    ap.add_argument("--skip-lm-eval", action="store_true")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    from hyperclova.eval.model import load_eval_model
    from hyperclova.eval.runner import evaluate_task, load_split
    from hyperclova.eval.scorer import Scorer
    from hyperclova.eval.tasks import load_task
    from hyperclova.tokenizer import load_tokenizer

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    ckpt, hf, tok_dir, task_yaml = setup(work, args.model)
    tok = load_tokenizer(tok_dir)
    plain = load_eval_model(ckpt, args.device).model
    # The demo task's template, scored the usual (direct) way, as lm-eval does below.
    spec = load_task(str(task_yaml)).replace(
        num_fewshot=4, runs=1, limit=args.examples, scoring="direct", target_delimiter=" ",
        doc_to_text="{{document}}\n평가:", doc_to_choice={0: "별로예요", 1: "좋아요"})
    test, train = load_split(spec, "test"), load_split(spec, "train")
    quiet = lambda *a, **k: None  # noqa: E731
    ll = {"one at a time": lambda: Scorer(ForwardOnly(plain), tok, batch_size=1),
          "batched (16)": lambda: Scorer(ForwardOnly(plain), tok, batch_size=16),
          "batched + shared context (default)": lambda: Scorer(plain, tok, batch_size=16)}
    res = evaluate_task(spec, Scorer(plain, tok), test, train, quiet)  # warm-up, and the prompts
    n = res["n_examples"]
    builder_prompts = _prompts(spec, Scorer(plain, tok), test, train)
    gen = {"one at a time": 1, "batched (16)": 16}
    times: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, make in ll.items():
            t0 = time.perf_counter()
            evaluate_task(spec, make(), test, train, quiet)
            times.setdefault(("ll", name), []).append(time.perf_counter() - t0)
        for name, bs in gen.items():
            s = Scorer(plain, tok, batch_size=bs)
            t0 = time.perf_counter()
            s.generate(builder_prompts, ["\n"], args.gen_tokens)
            times.setdefault(("gen", name), []).append(time.perf_counter() - t0)
    print(f"\nmodel {args.model} ({plain.plain_model.cfg.n_layers} layers, d {plain.plain_model.cfg.d_model}), "
          f"{n} examples, 4-shot, 2 choices; threads {torch.get_num_threads()}; median of {args.rounds}\n")
    print("| scoring | configuration | examples/s | vs one at a time |\n|---|---|---|---|")
    for kind in ("ll", "gen"):
        base = statistics.median(times[(kind, "one at a time")])
        for (k, name), ts in times.items():
            if k == kind:
                t = statistics.median(ts)
                label = "log-likelihood" if kind == "ll" else f"greedy, {args.gen_tokens} tokens"
                print(f"| {label} | {name} | {n / t:.2f} | {base / t:.2f}x |")
    if not args.skip_lm_eval:
        compare_lm_eval(work, task_yaml, n, ckpt, hf, args.rounds, args.device)


def _prompts(spec, scorer, test, train):
    from hyperclova.eval.protocol import PromptBuilder, draw_demonstrations

    b = PromptBuilder(spec, lambda s: len(scorer.tok.encode(s)), scorer.model.seq_len - 32)
    demos = draw_demonstrations(spec, 0, train.items)
    return [p.context for p in (b.build(ex, demos, 0) for ex in test.items[: spec.limit]) if p]


def compare_lm_eval(work: Path, task_yaml: Path, n: int, ckpt: str, hf: str, rounds: int,
                    device: str) -> None:
    """lm-eval on the same task and checkpoint: its `hf` model on the export vs our model class."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from hyperclova.eval.harness import HyperclovaLM

    tasks = lm_eval_task_dir(work, task_yaml, n)
    models = {"lm-eval `hf` on the to-hf export (trust_remote_code)":
              HFLM(pretrained=hf, trust_remote_code=True, batch_size=16, device=device),
              "lm-eval with our `hyperclova` model (DCP checkpoint)":
              HyperclovaLM(checkpoint=ckpt, batch_size=16, device=device)}
    times: dict[str, list[float]] = {}
    accs = {}
    for _ in range(rounds):
        for name, lm in models.items():
            tm = TaskManager(include_path=str(tasks), include_defaults=False)
            t0 = time.perf_counter()
            out = lm_eval.simple_evaluate(model=lm, tasks=["bench_sentiment"], task_manager=tm,
                                          verbosity="ERROR")
            times.setdefault(name, []).append(time.perf_counter() - t0)
            accs[name] = out["results"]["bench_sentiment"]["acc,none"]
    base = statistics.median(times[next(iter(models))])
    print(f"\nlm-eval simple_evaluate, same task ({n} examples, 4-shot), batch 16, median of {rounds}\n")
    print("| model | examples/s | vs `hf` | acc |\n|---|---|---|---|")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"| {name} | {n / t:.2f} | {base / t:.2f}x | {accs[name]:.3f} |")


if __name__ == "__main__":
    main()
