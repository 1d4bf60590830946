"""The output layer fused with the cross-entropy, chunked over tokens and vocabulary-parallel.

The logits of a 64k vocabulary in fp32 are the largest activation of a GPT step (Korthikanti et
al.'s 4 s b V bytes, twice over with their gradient). Here the projection `h @ W.T` and the loss
run over chunks of `chunk` tokens: the forward keeps only each token's log-sum-exp, the backward
recomputes one chunk of logits at a time, so at most (chunk x V/tp) fp32 logits exist at once.

Under tensor parallelism W holds this rank's slice of the vocabulary (it is the vocab-parallel
embedding, tied): every rank computes its slice's log-sum-exp and target logit, and one
all-gather per chunk combines them (Megatron's vocab-parallel cross-entropy). The gradient of the
hidden states is a partial sum over the TP ranks; DTensor reduces it (all-reduce, or reduce-scatter
under sequence parallelism) on the way back.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor, Partial, Replicate

IGNORE = -100  # labels of masked positions


def compute_dtype(device: torch.device, param_dtype: torch.dtype) -> torch.dtype:
    """The matmul dtype autocast would use here (bf16 under bf16 autocast), else the weight's."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return param_dtype


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, w, labels, chunk, group, vocab_start, dtype):
        n, v_local = h.size(0), w.size(0)
        with torch.autocast(h.device.type, enabled=False):
            hc, wc = h.to(dtype), w.to(dtype)
            lse = torch.empty(n, dtype=torch.float32, device=h.device)
            target = torch.empty(n, dtype=torch.float32, device=h.device)
            for s in range(0, n, chunk):
                logits = (hc[s:s + chunk] @ wc.T).float()
                idx, inside = _local_targets(labels[s:s + chunk], vocab_start, v_local)
                part = torch.stack([torch.logsumexp(logits, -1),
                                    logits.gather(1, idx[:, None]).squeeze(1) * inside])
                if group is not None:  # every rank's log-sum-exp and target logit (zero off-rank)
                    out = [torch.empty_like(part) for _ in range(dist.get_world_size(group))]
                    dist.all_gather(out, part, group=group)
                    out = torch.stack(out)
                    part = torch.stack([torch.logsumexp(out[:, 0], 0), out[:, 1].sum(0)])
                lse[s:s + chunk], target[s:s + chunk] = part[0], part[1]
                del logits, part  # before the next chunk's logits exist
            valid = labels != IGNORE
            count = valid.sum()
            loss = torch.where(valid, lse - target, 0.0).sum() / count
        ctx.save_for_backward(h, w, labels, lse, count)
        ctx.chunk, ctx.vocab_start, ctx.dtype = chunk, vocab_start, dtype
        return loss

    @staticmethod
    def backward(ctx, grad):
        h, w, labels, lse, count = ctx.saved_tensors
        chunk, dtype, v_local = ctx.chunk, ctx.dtype, w.size(0)
        with torch.autocast(h.device.type, enabled=False):
            hc, wc = h.to(dtype), w.to(dtype)
            grad_h = torch.empty_like(h)
            grad_w = torch.zeros(w.shape, dtype=torch.float32, device=w.device)
            scale = grad.float() / count
            for s in range(0, h.size(0), chunk):
                lab = labels[s:s + chunk]
                # d loss / d logits = (softmax - onehot(target)) / count, zero on masked tokens
                p = torch.exp((hc[s:s + chunk] @ wc.T).float() - lse[s:s + chunk, None])
                idx, inside = _local_targets(lab, ctx.vocab_start, v_local)
                p.scatter_add_(1, idx[:, None], -inside.to(p.dtype)[:, None])
                p *= (scale * (lab != IGNORE))[:, None]
                pc = p.to(dtype)
                grad_h[s:s + chunk] = pc @ wc
                grad_w += (pc.T @ hc[s:s + chunk]).float()
                del p, pc  # before the next chunk's logits exist
        return grad_h, grad_w.to(w.dtype), None, None, None, None, None


def _local_targets(labels: torch.Tensor, vocab_start: int, v_local: int):
    """Column of each label in this rank's vocabulary slice (0 when outside), and a 0/1 mask."""
    local = labels - vocab_start
    inside = (local >= 0) & (local < v_local)
    return torch.where(inside, local, 0), inside.float()


def _local_operands(h, weight):
    """Plain tensors for the kernel: all tokens' hidden states (B*T, d), this rank's vocabulary
    rows of the weight, and the TP group with this rank's first vocabulary id."""
    if not isinstance(weight, DTensor):
        return h.reshape(-1, h.size(-1)), weight, None, 0
    mesh = weight.device_mesh
    if mesh.mesh_dim_names != ("tp",):  # FSDP's shards must be gathered first
        raise ValueError(f"the output weight must be whole or vocab-parallel over tp, got {mesh}")
    if not isinstance(h, DTensor):
        h = DTensor.from_local(h, mesh, [Replicate()], run_check=False)
    # The gradient flowing back is each rank's partial sum: DTensor reduces it into h's layout.
    h = h.redistribute(mesh, [Replicate()]).to_local(grad_placements=[Partial()])
    w = weight.to_local()
    return h.reshape(-1, h.size(-1)), w, mesh.get_group(), mesh.get_local_rank() * w.size(0)


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                         chunk: int = 4096) -> torch.Tensor:
    """Mean cross-entropy of the logits `h @ weight.T` against `labels` (-100: ignored), never
    holding more than `chunk` tokens' fp32 logits (chunk 0: all tokens at once)."""
    h2, w, group, start = _local_operands(h, weight)
    n = h2.size(0)
    chunk = n if chunk <= 0 else min(chunk, n)
    dtype = compute_dtype(h2.device, w.dtype)
    return _LinearCrossEntropy.apply(h2, w, labels.reshape(-1), chunk, group, start, dtype)


@torch.no_grad()
def full_logits(h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The whole vocabulary's fp32 logits (B, T, V) as a plain tensor on every TP rank."""
    h2, w, group, _ = _local_operands(h, weight)
    logits = (h2.to(compute_dtype(h2.device, w.dtype)) @ w.to(compute_dtype(h2.device, w.dtype)).T).float()
    if group is not None:
        parts = [torch.empty_like(logits) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, logits.contiguous(), group=group)
        logits = torch.cat(parts, dim=-1)
    return logits.view(*h.shape[:-1], -1)
