"""The tuning procedure every layout (and the single-process reference) runs: batches with the
loss on the second half of each sequence only (the target tokens) and, for P-tuning, virtual
prompt ids around an input; a few SGD steps on the trainable parameters; forward_eval."""
from __future__ import annotations

import torch

from dist_harness import GLOBAL_BATCH, SEQ, VOCAB, batches, full_tensors, sequence_scores
from hyperclova.parallel.loss import IGNORE

STEPS, LR, CLIP = 4, 0.5, 1.0
TEMPLATE = (3, 3)  # tune.ptuning.template of the cases


def tune_batches(ptuning: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for tokens, labels in batches(STEPS):
        labels = labels.clone()
        labels[:, : SEQ // 2] = IGNORE
        if ptuning:  # [P]*3 input [P]*3 answer
            tokens = tokens.clone()
            a, b = TEMPLATE
            tokens[:, :a] = VOCAB + torch.arange(a)
            tokens[:, SEQ // 2 - b:SEQ // 2] = VOCAB + a + torch.arange(b)
        out.append((tokens, labels))
    return out


def tune_steps(engine, cfg, eval_rows: int = 2) -> dict:
    ptuning = cfg.tune.method == "ptuning"
    data = tune_batches(ptuning)
    trainable = [p for m in engine.model_parts for p in m.parameters() if p.requires_grad]
    frozen_before = {k: v for k, v in full_tensors(engine.model_parts, grads=False).items()
                     if not _trainable(engine, k)}
    opt = torch.optim.SGD(trainable, lr=LR) if trainable else None  # P-tuning: none past stage 0
    n_micro = GLOBAL_BATCH // (cfg.train.micro_batch_size * engine.dp_size)
    per_rank = GLOBAL_BATCH // engine.dp_size
    mine = slice(engine.dp_rank * per_rank, (engine.dp_rank + 1) * per_rank)
    record = {"losses": [], "norms": [], "grads": []}
    for tokens, labels in data:
        loss = engine.forward_backward(tokens[mine], labels[mine], n_micro)
        record["grads"].append(_trainable_grads(engine))
        record["norms"].append(engine.clip_grad_norm(CLIP).item())
        record["losses"].append(loss.item())
        if opt is not None:
            opt.step()
            opt.zero_grad(set_to_none=True)
    after = full_tensors(engine.model_parts, grads=False)
    record["frozen_unchanged"] = all(torch.equal(after[k], v) for k, v in frozen_before.items())
    record["frozen_dtypes"] = sorted({str(v.dtype) for v in frozen_before.values()})
    record["params"] = {k: v for k, v in after.items() if _trainable(engine, k)}
    tokens, labels = data[0]
    rows = slice(eval_rows * engine.dp_rank, eval_rows * (engine.dp_rank + 1))
    record["forward_eval"] = engine.forward_eval(tokens[rows], sequence_scores(labels[rows].clamp(min=0)))
    return record


def _trainable(engine, name: str) -> bool:
    from hyperclova.parallel.build import plain_name

    return any(plain_name(n) == name and p.requires_grad
               for m in engine.model_parts for n, p in m.named_parameters())


def _trainable_grads(engine) -> dict[str, torch.Tensor]:
    from torch.distributed.tensor import DTensor

    from hyperclova.parallel.build import plain_name

    out = {}
    for m in engine.model_parts:
        for n, p in m.named_parameters():
            if p.requires_grad:
                g = p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad
                out[plain_name(n)] = g.detach().clone()
    return out
