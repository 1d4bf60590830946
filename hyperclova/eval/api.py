"""`run_evaluation`: what `python -m hyperclova.eval` does, callable from Python."""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Optional, Sequence

from hyperclova.corpus.jsonl import write_json_atomic
from hyperclova.errors import UserError


def run_evaluation(checkpoint: str, task: str, data: Optional[Sequence[str]] = None,
                   train: Optional[str] = None, tokenizer: Optional[str] = None,
                   shots: Optional[int] = None, runs: Optional[int] = None,
                   seed: Optional[int] = None, limit: Optional[int] = None,
                   length_normalization: Optional[str] = None, batch_size: int = 16,
                   batch_tokens: int = 8192, window: Optional[int] = None,
                   stride: Optional[int] = None, json_keys: Sequence[str] = ("text",),
                   output: Optional[str] = None, predictions: Optional[str] = None,
                   device: str = "cpu", overrides: Sequence[str] = (), log=None,
                   adapter: Optional[str] = None) -> dict:
    from hyperclova.eval.model import load_eval_model
    from hyperclova.eval.runner import evaluate_perplexity, evaluate_task, load_split
    from hyperclova.eval.scorer import Scorer
    from hyperclova.eval.tasks import load_task
    from hyperclova.tokenizer import load_tokenizer

    t0 = time.perf_counter()
    _check_options_apply(task, window=window, stride=stride, train=train, shots=shots, runs=runs,
                         seed=seed, length_normalization=length_normalization,
                         predictions=predictions)
    spec = tuned = None
    if adapter:  # a tuned model: its task template (P-tuning's virtual tokens), zero-shot
        from hyperclova.tune.adapters import open_adapter, tuned_task

        tuned = open_adapter(adapter)
    if task != "perplexity":  # read the task first: a bad task file fails before model loading
        spec = load_task(task)
        if tuned is not None:  # zero-shot: one run (runs differ only in their demonstrations)
            spec = tuned_task(spec, tuned.cfg).replace(num_fewshot=0, runs=1)  # --shots/--runs: below
        spec = spec.replace(num_fewshot=shots, runs=runs, seed=seed, limit=limit,
                            length_normalization=length_normalization)
        from hyperclova.eval.tasks import validate_task

        validate_task(spec)
        if data and len(data) > 1:  # --data takes several files only for perplexity
            raise UserError(f"task {spec.task}: --data takes one test file, got {len(data)}")
        test = load_split(spec, "test", data[0] if data else None)
        if test is None:
            raise UserError(f"task {spec.task}: give the test file with --data")
        train_ex = load_split(spec, "train", train) if spec.num_fewshot and \
            spec.demonstrations == "per_run" else None
    elif not data:
        raise UserError("perplexity needs --data FILE... (JSONL/text files or .bin/.idx shards)")
    loaded = load_eval_model(checkpoint, device, list(overrides), tuned)
    is_main = loaded.rank == 0
    log = log or (print if is_main else (lambda *a, **k: None))
    tok_dir = tokenizer or loaded.tokenizer_dir
    if not tok_dir:
        raise UserError("the checkpoint names no tokenizer (data.tokenizer): pass --tokenizer DIR")
    tok = load_tokenizer(tok_dir)
    if tuned is not None:
        from hyperclova.tune.adapters import adapter_tokenizer

        tok = adapter_tokenizer(tuned.cfg, tok)
    if tok.vocab_size > loaded.model_cfg.vocab_size:
        raise UserError(f"tokenizer {tok_dir} has {tok.vocab_size} ids but the model only "
                        f"{loaded.model_cfg.vocab_size}")
    scorer = Scorer(loaded.model, tok, batch_size, batch_tokens)
    if spec is None:
        result = evaluate_perplexity(list(data), scorer, window, stride, limit, json_keys, log,
                                     tok_dir)
        preds = None
    else:
        result = evaluate_task(spec, scorer, test, train_ex, log)
        preds = result.pop("_predictions")
        result["config"] = {k: v for k, v in dataclasses.asdict(spec).items()
                            if k not in ("data_files",)}
    if tuned is not None:
        result["adapter"] = {"path": str(tuned.path), "method": tuned.method,
                             "base": str(loaded.base)}
    result.update(checkpoint=str(checkpoint or loaded.base), step=loaded.step, tokenizer=str(tok_dir),
                  model=_model_info(loaded.model_cfg, tok), layout=loaded.layout,
                  total_wall_time_s=round(time.perf_counter() - t0, 3))
    if is_main:
        if output:
            write_json_atomic(output, result)
            log(f"wrote {output}")
        if predictions and preds is not None:
            _write_predictions(predictions, spec, preds)
            log(f"wrote {predictions}")
    return result


# Options that only one kind of evaluation reads: given to the other, they are refused, not ignored.
_PERPLEXITY_ONLY = ("window", "stride")
_TASK_ONLY = ("train", "shots", "runs", "seed", "length_normalization", "predictions")


def _check_options_apply(task: str, **given) -> None:
    unused = _TASK_ONLY if task == "perplexity" else _PERPLEXITY_ONLY
    bad = ["--" + k.replace("_", "-") for k in unused if given[k] is not None]
    if bad:
        kind = "perplexity" if task == "perplexity" else f"task {task}"
        raise UserError(f"{kind} does not read {', '.join(bad)}; leave it out")


def _model_info(mc, tok) -> dict:
    from hyperclova.model.presets import count_params

    return {"preset": mc.preset, "params": count_params(mc), "n_layers": mc.n_layers,
            "d_model": mc.d_model, "seq_len": mc.seq_len, "vocab_size": mc.vocab_size,
            "tokenizer_type": tok.type}


def _write_predictions(path: str, spec, preds: list) -> None:
    if spec.metric == "korquad":  # the official script's input: {qid: answer} (the first run)
        write_json_atomic(path, preds[0])
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", encoding="utf-8") as f:
        for run, records in enumerate(preds):
            for rec in records:
                f.write(json.dumps({"run": run, **rec}, ensure_ascii=False) + "\n")
