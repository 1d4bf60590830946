"""The output layer fused with the cross-entropy, chunked over tokens and vocabulary-parallel.

The logits of a 64k vocabulary in fp32 are the largest activation of a GPT step (Korthikanti et
al.'s 4 s b V bytes, several times over with softmax and gradient). Here the projection `h @ W.T`
and the loss run over chunks of `chunk` tokens, and when gradients are wanted they are computed
right there, chunk by chunk (softmax minus one-hot, times W and times h): the backward only
scales them. At most (chunk x V/tp) fp32 logits exist at once, and no matmul runs twice.

Under tensor parallelism W holds this rank's slice of the vocabulary (it is the vocab-parallel
embedding, tied): every rank computes its slice's log-sum-exp and target logit, and one
all-gather per chunk combines them (Megatron's vocab-parallel cross-entropy). The gradient of the
hidden states is then a partial sum over the TP ranks; DTensor reduces it (all-reduce, or
reduce-scatter under sequence parallelism) on the way back.
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
        # A frozen head (LoRA, P-tuning) needs no weight gradient: skipping it saves a
        # weight-sized fp32 buffer and one matmul per chunk.
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grads = need_h or need_w
        with torch.autocast(h.device.type, enabled=False):
            hc, wc = h.to(dtype), w.to(dtype)
            valid = labels != IGNORE
            count = valid.sum()
            total = torch.zeros((), dtype=torch.float32, device=h.device)
            grad_h = torch.empty_like(h) if need_h else None
            grad_w = torch.zeros(w.shape, dtype=torch.float32, device=w.device) if need_w else None
            for s in range(0, n, chunk):
                e = (hc[s:s + chunk] @ wc.T).float()
                m = e.amax(-1, keepdim=True)
                e.sub_(m).exp_()  # exp(logit - row max), in place: one chunk-sized buffer
                z = e.sum(-1)
                idx, inside = _local_targets(labels[s:s + chunk], vocab_start, v_local)
                lse_local = m.squeeze(-1) + z.log()
                target = (e.gather(1, idx[:, None]).squeeze(1).log() + m.squeeze(-1)) * inside
                lse = lse_local
                if group is not None:  # every rank's log-sum-exp and target (zero off-rank)
                    parts = [torch.empty(2, e.size(0), device=e.device)
                             for _ in range(dist.get_world_size(group))]
                    dist.all_gather(parts, torch.stack([lse_local, target]), group=group)
                    parts = torch.stack(parts)
                    lse, target = torch.logsumexp(parts[:, 0], 0), parts[:, 1].sum(0)
                ok = valid[s:s + chunk]
                total += torch.where(ok, lse - target, 0.0).sum()
                if grads:  # d loss / d logits = (softmax - onehot(target)) / count; 0 if masked
                    e.mul_((torch.exp(lse_local - lse) / z * ok / count)[:, None])
                    e.scatter_add_(1, idx[:, None], -(inside * ok / count).to(e.dtype)[:, None])
                    pc = e.to(dtype)
                    del e
                    if need_h:
                        grad_h[s:s + chunk] = pc @ wc
                    if need_w:
                        grad_w += (pc.T @ hc[s:s + chunk]).float()
                    del pc  # before the next chunk's logits exist
                else:
                    del e
        if grads:
            ctx.save_for_backward(grad_h, None if grad_w is None else grad_w.to(w.dtype))
        return total / count

    @staticmethod
    def backward(ctx, grad):
        grad_h, grad_w = ctx.saved_tensors
        scale = [None if g is None else g * grad.to(g.dtype) for g in (grad_h, grad_w)]
        return (*scale, None, None, None, None, None)


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
