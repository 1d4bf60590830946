"""The lm-evaluation-harness bridge: our checkpoints as an `lm_eval` model named "hyperclova".

    python -m hyperclova.eval.harness --model hyperclova \\
        --model_args checkpoint=runs/1.3b/checkpoints --batch_size 16 --tasks kobest_boolq

(the `lm_eval` command line with our model registered; any lm-eval argument works). From Python,
`import hyperclova.eval.harness` registers the class before `lm_eval.simple_evaluate(model=
"hyperclova", ...)`. The three request types go through our `Scorer`: context and continuation
are encoded together and split on a token boundary (docs/eval.md), requests are batched by length,
and the morpheme-aware tokenizer runs as in training. `checkpoint` takes what `python -m
hyperclova.eval --checkpoint` takes (a DCP dir, a `to-hf` export, a consolidated file).
"""
from __future__ import annotations

import sys

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from hyperclova.eval.model import load_eval_model
from hyperclova.eval.scorer import Scorer


@register_model("hyperclova")
class HyperclovaLM(LM):
    def __init__(self, checkpoint: str, tokenizer: str | None = None, device: str = "cpu",
                 batch_size: int | str = 16, batch_tokens: int = 8192, **_ignored) -> None:
        super().__init__()
        from hyperclova.errors import UserError
        from hyperclova.tokenizer import load_tokenizer

        import torch

        if str(device).startswith("cuda") and not torch.cuda.is_available():
            # lm-eval passes its --device default (cuda) to every model; run where we can.
            print(f"hyperclova: device {device!r} is not available, using cpu", file=sys.stderr)
            device = "cpu"
        loaded = load_eval_model(checkpoint, str(device))
        tok_dir = tokenizer or loaded.tokenizer_dir
        if not tok_dir:
            raise UserError("the checkpoint names no tokenizer: pass tokenizer=DIR in --model_args")
        bs = 16 if str(batch_size).startswith("auto") else int(batch_size)
        self.scorer = Scorer(loaded.model, load_tokenizer(tok_dir), bs, int(batch_tokens))
        self._rank, self._world = loaded.rank, loaded.model.dp_size

    @property
    def tokenizer_name(self) -> str:
        return "hyperclova"

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        res = self.scorer.loglikelihood([r.args[:2] for r in requests])
        return [(r.logprob, r.greedy) for r in res]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        tok = self.scorer.tok
        items, owner = [], []
        for i, r in enumerate(requests):
            for item in self.scorer.rolling_windows(tok.encode(r.args[0])):
                items.append(item)
                owner.append(i)
        totals = [0.0] * len(requests)
        for i, res in zip(owner, self.scorer.loglikelihood_tokens(items)):
            totals[i] += res.logprob
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy; requests are grouped by their stop strings and token limit."""
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            kw = r.args[1] if len(r.args) > 1 else {}
            until = kw.get("until", [])
            until = [until] if isinstance(until, str) else list(until)
            groups.setdefault((tuple(until), int(kw.get("max_gen_toks", 256))), []).append(i)
        out: list[str] = [""] * len(requests)
        L = self.scorer.model.seq_len
        for (until, max_new), idx in groups.items():
            max_new = min(max_new, L - 1)
            # lm-eval's convention: keep the end of a context that does not fit.
            prompts = [self.scorer.tok.encode(requests[i].args[0])[-(L - max_new):] or
                       [self.scorer.tok.eod_id] for i in idx]
            for i, text in zip(idx, self.scorer.generate_ids(prompts, until, max_new)):
                out[i] = text
        return out

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world


def main() -> None:
    """The lm_eval command line, with the hyperclova model registered."""
    from lm_eval.__main__ import cli_evaluate

    sys.argv[0] = "lm-eval"
    cli_evaluate()


if __name__ == "__main__":
    main()
