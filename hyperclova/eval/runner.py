"""Running a task: demonstrations per run, prompts, scoring, metrics, mean and std over runs."""
from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

from hyperclova.errors import UserError
from hyperclova.eval import metrics as M
from hyperclova.eval.formats import Example, Examples, read_examples
from hyperclova.eval.protocol import (
    PromptBuilder,
    draw_demonstrations,
    gold_label,
    paragraph_demonstrations,
    target_text,
)
from hyperclova.eval.scorer import Scorer, bits_per_char
from hyperclova.eval.tasks import TaskSpec

N_FIRST_PROMPTS = 3


def load_split(spec: TaskSpec, split: str, path: Optional[str] = None) -> Optional[Examples]:
    path = path or spec.data_files.get(split)
    if not path:
        return None
    options = dict(spec.options)
    if spec.format == "ynat" and spec.doc_to_choice:
        options.setdefault("labels", tuple(spec.doc_to_choice))
    if spec.format == "jsonl" and "json_keys" not in options:
        # The text fields the prompt template reads must be present, non-empty strings.
        options["json_keys"] = template_fields(spec.doc_to_text) or ("text",)
    return read_examples(spec.format, path, **options)


def template_fields(template: str) -> tuple[str, ...]:
    import jinja2
    from jinja2 import meta

    return tuple(sorted(meta.find_undeclared_variables(jinja2.Environment().parse(template))))


def evaluate_task(spec: TaskSpec, scorer: Scorer, test: Examples,
                  train: Optional[Examples] = None, log=print) -> dict:
    """Scores of `spec` on `test` (the first `spec.limit` examples), one entry per run."""
    t0 = time.perf_counter()
    queries = test.items[: spec.limit] if spec.limit else list(test.items)
    if not queries:
        raise UserError(f"{test.path}: no examples to evaluate")
    mc = spec.output_type == "multiple_choice"
    reserve = (max(len(scorer.tok.encode(spec.target_delimiter + w)) for w in spec.doc_to_choice.values())
               if mc else spec.max_gen_toks)  # channel: the label word and delimiter, likewise
    builder = PromptBuilder(spec, lambda s: len(scorer.tok.encode(s)), scorer.model.seq_len)
    by_paragraph: dict[str, list[Example]] = {}
    if spec.demonstrations == "same_paragraph":
        for ex in test.items:
            by_paragraph.setdefault(ex.fields["paragraph"], []).append(ex)
    runs, predictions, first_prompts, straddled = [], [], [], 0
    for run in range(spec.runs):
        demos = (draw_demonstrations(spec, run, train.items if train else [])
                 if spec.demonstrations == "per_run" else None)
        kept, prompts = [], []
        for ex in queries:
            d = demos if demos is not None else paragraph_demonstrations(spec, run, ex, by_paragraph)
            p = builder.build(ex, d, reserve)
            if p is not None:
                kept.append(ex)
                prompts.append(p)
        if not kept:
            raise UserError(f"{spec.task}: no query fits the model's context of {scorer.model.seq_len}")
        if run == 0:
            first_prompts = [_shown(spec, p) for p in prompts[:N_FIRST_PROMPTS]]
        if mc:
            result, preds, n_straddled = _score_choices(spec, scorer, kept, prompts)
            straddled += n_straddled
        else:
            outs = scorer.generate([p.context for p in prompts], spec.until, spec.max_gen_toks)
            result, preds = _score_generation(spec, kept, [o.strip() for o in outs])
        runs.append(result)
        predictions.append(preds)
        log(f"{spec.task} run {run + 1}/{spec.runs}: "
            + ", ".join(f"{k}={v:.2f}" for k, v in result.items()))
    out = {
        "task": spec.task,
        "metrics": aggregate(runs),
        "n_examples": len(queries),
        "protocol": {**dataclasses.asdict(builder.counts), "straddled_continuations": straddled},
        "data": {"test": test.summary(), "train": train.summary() if train else None},
        "first_prompts": first_prompts,
        "wall_time_s": round(time.perf_counter() - t0, 3),
    }
    if mc:
        out["majority_baseline"] = majority_baseline(spec, queries)
    out["_predictions"] = predictions  # popped by the caller for --predictions
    return out


def _shown(spec: TaskSpec, p) -> str:
    """The prompt as the model reads it (channel scoring: with the first label word)."""
    if spec.scoring == "channel":
        return p.context + next(iter(spec.doc_to_choice.values())) + spec.target_delimiter + p.query
    return p.context


def _score_choices(spec: TaskSpec, scorer: Scorer, kept: list[Example], prompts: list):
    labels = list(spec.doc_to_choice)
    if spec.scoring == "channel":  # P(query | label word): the query is the continuation
        pairs = [(p.context + spec.doc_to_choice[k], spec.target_delimiter + p.query)
                 for p in prompts for k in labels]
        conts = [c for _, c in pairs]
    else:
        words = [spec.target_delimiter + spec.doc_to_choice[k] for k in labels]
        pairs = [(p.context, c) for p in prompts for c in words]
        conts = words * len(prompts)
    res = scorer.loglikelihood(pairs)
    preds, golds, probs, n_straddled = [], [], [], 0
    for i, ex in enumerate(kept):
        rs = res[i * len(labels):(i + 1) * len(labels)]
        cs = conts[i * len(labels):(i + 1) * len(labels)]
        n_straddled += sum(r.straddled for r in rs)
        scores = [_normalised(spec, r.logprob, r.n_tokens, c) for r, c in zip(rs, cs)]
        best = max(range(len(labels)), key=lambda j: (scores[j], -j))
        m = max(scores)
        z = sum(math.exp(s - m) for s in scores)
        probs.append([math.exp(s - m) / z for s in scores])
        preds.append(labels[best])
        golds.append(gold_label(spec, ex))
    result = _classification_metrics(spec, preds, golds, probs, kept)
    records = [{"where": ex.where, "gold": g, "prediction": p,
                "scores": dict(zip(map(str, labels), [round(x, 6) for x in pr]))}
               for ex, g, p, pr in zip(kept, golds, preds, probs)]
    return result, records, n_straddled


def _normalised(spec: TaskSpec, logprob: float, n_tokens: int, continuation: str) -> float:
    if spec.length_normalization == "tokens":
        return logprob / max(n_tokens, 1)
    if spec.length_normalization == "chars":
        return logprob / max(len(continuation), 1)
    return logprob


def _classification_metrics(spec, preds, golds, probs, kept) -> dict:
    if spec.metric == "accuracy":
        return {"accuracy": M.accuracy(preds, golds)}
    if spec.metric == "macro_f1":
        return {"macro_f1": M.macro_f1(preds, golds), "accuracy": M.accuracy(preds, golds)}
    # sts: the chosen label against gold >= 3.0; 5 x P(similar) against the real-valued label.
    pos = list(spec.doc_to_choice).index(1)
    f1 = 100.0 * M.f1_per_label(preds, golds, 1)
    r = M.pearson([5.0 * p[pos] for p in probs], [ex.fields["real_label"] for ex in kept])
    return {"f1": f1, "pearson": r}


def _score_generation(spec: TaskSpec, kept: list[Example], outs: list[str]):
    if spec.metric == "korquad":
        preds = {ex.fields["id"]: o for ex, o in zip(kept, outs)}
        golds = {ex.fields["id"]: ex.fields["answers"] for ex in kept}
        result = M.korquad_scores(preds, golds)
        return result, preds
    refs = [target_text(spec, ex) for ex in kept]
    if spec.metric == "bleu":
        result = {"bleu": M.corpus_bleu(outs, refs, spec.target_lang)}
    else:
        result = {"exact_match": 100.0 * sum(o == r for o, r in zip(outs, refs)) / len(refs)}
    records = [{"where": ex.where, "gold": r, "prediction": o} for ex, r, o in zip(kept, refs, outs)]
    return result, records


def aggregate(runs: list[dict]) -> dict:
    """{metric: {mean, std (sample, 0 for one run), n, runs}}"""
    out = {}
    for key in runs[0]:
        vals = [r[key] for r in runs]
        finite = [v for v in vals if not math.isnan(v)]
        mean = statistics.fmean(finite) if finite else float("nan")
        std = statistics.stdev(finite) if len(finite) > 1 else 0.0
        out[key] = {"mean": mean, "std": std, "n": len(vals), "runs": vals}
    return out


def majority_baseline(spec: TaskSpec, queries: list[Example]) -> dict:
    """What always answering the most frequent gold label scores (the floor to beat)."""
    golds = [gold_label(spec, ex) for ex in queries]
    top = Counter(golds).most_common(1)[0][0]
    preds = [top] * len(golds)
    if spec.metric == "sts":
        return {"f1": 100.0 * M.f1_per_label(preds, golds, 1), "label": str(top)}
    res = {"accuracy": M.accuracy(preds, golds), "label": str(top)}
    if spec.metric == "macro_f1":
        res["macro_f1"] = M.macro_f1(preds, golds)
    return res


# --- perplexity ------------------------------------------------------------------------------------

def evaluate_perplexity(inputs: Sequence[str], scorer: Scorer, window: Optional[int] = None,
                        stride: Optional[int] = None, limit: Optional[int] = None,
                        json_keys: Sequence[str] = ("text",), log=print,
                        tokenizer_dir: Optional[str] = None) -> dict:
    """Per-token perplexity and bits per character over JSONL/text files (the shared reader) or
    .bin/.idx shards (given by prefix or either file). Each document is scored on its own with
    rolling windows; bits per character divide by Unicode characters, so models with different
    tokenizers compare fairly. With `tokenizer_dir`, shards made by another tokenizer are refused
    (their sidecar's fingerprint, docs/data.md)."""
    t0 = time.perf_counter()
    from hyperclova.data.reader import ReadStats

    stats = ReadStats()
    made_by = None
    if tokenizer_dir is not None:
        from hyperclova.tokenizer.load import tokenizer_fingerprint

        made_by = (tokenizer_dir, tokenizer_fingerprint(tokenizer_dir))
    docs = list(_perplexity_docs(inputs, scorer.tok, json_keys, limit, stats, made_by))
    if not docs:
        raise UserError(f"no documents to score in {list(inputs)}")
    items = [item for ids, _, _ in docs for item in scorer.rolling_windows(ids, window, stride)]
    results = scorer.loglikelihood_tokens(items)  # one batched pass over every window
    total_lp = sum(r.logprob for r in results)
    total_tokens = sum(r.n_tokens for r in results)
    total_chars = sum(c for _, c, _ in docs)
    total_bytes = sum(b for _, _, b in docs)
    res = {
        "perplexity": math.exp(-total_lp / total_tokens),
        "bits_per_char": bits_per_char(total_lp, total_chars),
        "bits_per_byte": bits_per_char(total_lp, total_bytes),
        "documents": len(docs), "tokens": total_tokens, "chars": total_chars,
        "window": window or scorer.model.seq_len, "stride": stride or window or scorer.model.seq_len,
    }
    if stats.read:
        log(stats.summary())
    log("perplexity: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in res.items()))
    return {"task": "perplexity", "metrics": {k: {"mean": res[k], "std": 0.0, "n": 1, "runs": [res[k]]}
                                              for k in ("perplexity", "bits_per_char", "bits_per_byte")},
            "n_examples": len(docs), "details": res, "inputs": list(inputs),
            "read": stats.to_json() if stats.read else None,
            "wall_time_s": round(time.perf_counter() - t0, 3)}


def _perplexity_docs(inputs, tok, json_keys, limit, stats, made_by=None):
    """(token ids, characters, UTF-8 bytes) per document."""
    shards = [p for p in inputs if _shard_prefix(p)]
    texts = [p for p in inputs if not _shard_prefix(p)]
    n = 0
    for prefix in (_shard_prefix(p) for p in shards):
        from megatron.core.datasets.indexed_dataset import IndexedDataset

        from hyperclova.data.indexed import check_shard

        check_shard(prefix, tok.vocab_size, made_by)
        ds = IndexedDataset(prefix)
        for i in range(len(ds)):
            ids = [int(t) for t in ds[i]]
            while ids and ids[-1] == tok.eod_id:  # --append-eod: the text path has none either
                ids.pop()
            if not ids:
                continue
            text = tok.decode(ids)
            yield ids, len(text), len(text.encode("utf-8"))
            n += 1
            if limit and n >= limit:
                return
    if texts:
        from hyperclova.data.reader import expand_inputs, iter_records

        for rec in iter_records(expand_inputs(texts), json_keys=tuple(json_keys), stats=stats):
            text = "\n".join(rec.texts)
            yield tok.encode(text), len(tok.normalize(text)), len(tok.normalize(text).encode("utf-8"))
            n += 1
            if limit and n >= limit:
                return


def _shard_prefix(path: str) -> Optional[str]:
    p = str(path)
    for suffix in (".bin", ".idx"):
        if p.endswith(suffix):
            p = p[: -len(suffix)]
    return p if Path(p + ".bin").is_file() and Path(p + ".idx").is_file() else None
