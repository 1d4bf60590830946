"""python -m hyperclova.eval: few-shot tasks and perplexity on a trained checkpoint.

    python -m hyperclova.eval --checkpoint runs/1.3b/checkpoints --task nsmc \\
        --data nsmc/ratings_test.txt --train nsmc/ratings_train.txt --output nsmc.json
    python -m hyperclova.eval --hf-dir hf/ko-1.3b --task korquad --data KorQuAD_v1.0_dev.json \\
        --predictions korquad_pred.json          # the official {qid: answer} file
    python -m hyperclova.eval --checkpoint ... --task perplexity --data valid.jsonl data/x_text_document
    python -m hyperclova.eval --checkpoint ... --task my_task.yaml     # your own task file
    torchrun --nproc_per_node 4 -m hyperclova.eval --checkpoint ... --task ynat ... parallel.tp=2
    python -m hyperclova.eval --adapter runs/tune/nsmc/checkpoints --task nsmc --data ratings_test.txt

Built-in tasks: nsmc, korquad, ynat, klue_sts, aihub_koen, aihub_enko (docs/eval.md).
"""
from __future__ import annotations

import argparse

import torch

from hyperclova.errors import cli_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hyperclova.eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="DCP run dir (its latest) or step dir, or a consolidated .safetensors")
    src.add_argument("--hf-dir", help="a `to-hf` export directory")
    p.add_argument("--adapter", help="a tuned checkpoint (python -m hyperclova.tune: LoRA, P-tuning "
                                     "or full) applied to its base (--checkpoint, default: the base "
                                     "it names); zero-shot unless --shots is given")
    p.add_argument("--task", required=True,
                   help="built-in task name, a task YAML file, or 'perplexity'")
    p.add_argument("--data", nargs="+", help="test file (perplexity: JSONL/text files or .bin/.idx shards)")
    p.add_argument("--train", help="file the demonstrations are drawn from")
    p.add_argument("--tokenizer", help="tokenizer dir (default: the checkpoint's data.tokenizer)")
    p.add_argument("--shots", type=int, help="demonstrations per prompt (num_fewshot)")
    p.add_argument("--runs", type=int, help="demonstration sets, each with its own seed")
    p.add_argument("--seed", type=int)
    p.add_argument("--limit", type=int, help="evaluate the first N test examples")
    p.add_argument("--length-normalization", choices=["none", "tokens", "chars"])
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batch-tokens", type=int, default=8192, help="padded tokens per batch at most")
    p.add_argument("--window", type=int, help="perplexity: tokens per window (default: the context)")
    p.add_argument("--stride", type=int, help="perplexity: window advance (default: the window)")
    p.add_argument("--json-keys", nargs="+", default=["text"], help="perplexity: JSONL keys to score")
    p.add_argument("--output", help="write the JSON result here")
    p.add_argument("--predictions", help="per-example predictions (KorQuAD: the official {qid: answer})")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("overrides", nargs="*", help="parallel.* overrides, e.g. parallel.tp=2")
    return p


@cli_main
def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.checkpoint or args.hf_dir or args.adapter):
        parser.error("one of --checkpoint, --hf-dir or --adapter is required")
    if args.hf_dir and args.adapter:
        parser.error("--adapter applies to a DCP base checkpoint (--checkpoint), not to --hf-dir")
    from hyperclova.eval.api import run_evaluation

    result = run_evaluation(
        checkpoint=args.checkpoint or args.hf_dir, task=args.task, data=args.data, train=args.train,
        tokenizer=args.tokenizer, shots=args.shots, runs=args.runs, seed=args.seed,
        limit=args.limit, length_normalization=args.length_normalization,
        batch_size=args.batch_size, batch_tokens=args.batch_tokens, window=args.window,
        stride=args.stride, json_keys=args.json_keys, output=args.output,
        predictions=args.predictions, device=args.device, overrides=args.overrides,
        adapter=args.adapter)
    return result


if __name__ == "__main__":
    main()
