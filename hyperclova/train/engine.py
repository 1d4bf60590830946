"""The engine: one class for every layout, one device included (docs/parallel.md).

    engine = build_engine(cfg, device, model_transforms=(add_adapters,))
    loss = engine.forward_backward(tokens, labels, n_micro)     # this rank's share of a batch
    norm = engine.clip_grad_norm(1.0)
    engine.forward_eval(tokens, reduce=lambda logits: logits.argmax(-1))

The model parts come from the one build path (hyperclova/parallel/build.py). A step runs its
micro-batches either by gradient accumulation or through a pipeline schedule; either way the
output layer is applied together with the loss (hyperclova/parallel/loss.py), gradients that
DTensor left as partial sums are reduced, the two copies of the tied embedding are summed, and
the loss returned is the mean over the global batch, as on one device. Nothing here waits for the
host: losses and norms are device tensors.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    set_model_state_dict,
)
from torch.distributed.checkpoint.stateful import Stateful
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor

from hyperclova.config import Config
from hyperclova.errors import UserError
from hyperclova.parallel.accounting import local_tensor
from hyperclova.parallel.build import (
    BuiltModel,
    ModelTransform,
    autocast_dtype_for,
    build_parts,
    resolve_device,
)
from hyperclova.parallel.grads import clip_, global_norm
from hyperclova.parallel.layout import pipeline_microbatches
from hyperclova.parallel.loss import full_logits, linear_cross_entropy
from hyperclova.parallel.pipeline import build_eval_schedule, build_schedule, tied_embedding_groups

__all__ = ["Engine", "ModelState", "build_engine", "resolve_device", "autocast_dtype_for"]

HEAD, EMB = "lm_head.weight", "tok_emb.weight"  # the output weight is tied to the embedding


def head_only(part: nn.Module) -> bool:
    """A pipeline stage with the output projection but not the embedding: its `lm_head.weight` is
    an untied copy of the embedding."""
    return getattr(part, "lm_head", None) is not None and getattr(part, "tok_emb", None) is None


def to_checkpoint_keys(part: nn.Module, sd: dict) -> dict:
    """Store a head-only stage's output weight (and its optimizer state) under the embedding's
    key, so every layout writes and reads the same entry."""
    return {k.replace(HEAD, EMB): v for k, v in sd.items()} if head_only(part) else sd


def from_checkpoint_keys(part: nn.Module, sd: dict) -> dict:
    return {k.replace(EMB, HEAD): v for k, v in sd.items()} if head_only(part) else sd


class ModelState(Stateful):
    """Model weights of all parts on this rank, keyed by the plain model's FQNs; the tied output
    weight is never stored twice. `keys` restricts it to a subset (loading weights only)."""

    def __init__(self, model_parts: list[nn.Module], keys: set[str] | None = None):
        self.model_parts = model_parts
        self.keys = keys

    def state_dict(self) -> dict:
        sd = {}
        for m in self.model_parts:
            part = get_model_state_dict(m)
            if not head_only(m):
                part.pop(HEAD, None)
            sd.update(to_checkpoint_keys(m, part))
        return sd if self.keys is None else {k: v for k, v in sd.items() if k in self.keys}

    def load_state_dict(self, state_dict: dict) -> None:
        opts = StateDictOptions(strict=False)
        for m in self.model_parts:
            set_model_state_dict(m, from_checkpoint_keys(m, state_dict), options=opts)


def sdpa_backends(cfg: Config, device: torch.device) -> list | None:
    """Attention kernels in order of preference: the config's, or cuDNN first on Hopper and
    newer (where it is the fastest SDPA kernel), or None to leave torch's own order."""
    from torch.nn.attention import SDPBackend

    names = cfg.train.sdpa_backends
    if names is None:
        if device.type != "cuda" or torch.cuda.get_device_capability(device) < (9, 0):
            return None
        names = ["cudnn", "flash", "efficient", "math"]
    table = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
             "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
    return [table[n] for n in names]


def _sdpa_context(backends: list | None):
    if backends is None:
        return contextlib.nullcontext()
    from torch.nn.attention import sdpa_kernel

    try:
        return sdpa_kernel(backends, set_priority=True)
    except TypeError:  # torch before 2.6: a set of allowed kernels, without an order
        return sdpa_kernel(backends)


class Engine:
    def __init__(self, cfg: Config, device: torch.device, built: BuiltModel):
        self.cfg, self.device = cfg, device
        self.model_parts = built.parts
        self.layout, self.coord, self.mesh = built.layout, built.coord, built.mesh
        self.stage_ids, self.n_stages = built.stage_ids, built.layout.n_stages
        self.base_names = built.base_names
        self.dp_rank, self.dp_size = self.layout.dp_rank(self.coord), self.layout.dp
        self.has_first = 0 in self.stage_ids
        self.has_last = self.n_stages - 1 in self.stage_ids
        # FSDP2/replicate cast to bf16 themselves; autocast covers layouts without them.
        self.autocast_dtype = None if self.layout.dp > 1 else autocast_dtype_for(cfg, device)
        self.sdpa = sdpa_backends(cfg, device)
        self.chunk = cfg.train.loss_chunk_tokens
        self.schedule = self.embed_group = None
        self._eval_schedules: dict = {}
        if self.layout.pp > 1:
            group = self.mesh["pp"].get_group()
            n_micro = pipeline_microbatches(cfg, self.layout.dp)
            self.schedule = build_schedule(self.model_parts, self.stage_ids, self.n_stages, device,
                                           group, cfg.parallel.schedule, n_micro, self._head_loss)
            last_rank = (self.n_stages - 1) % self.layout.pp  # stage s runs on pipeline rank s % pp
            self.embed_group = tied_embedding_groups(self.mesh, 0, last_rank)

    # -- pieces shared by training and evaluation -----------------------------------------------

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _context(self):
        stack = contextlib.ExitStack()
        stack.enter_context(_sdpa_context(self.sdpa))
        stack.enter_context(self._autocast())
        return stack

    def _head_part(self) -> nn.Module:
        return next(m for m in self.model_parts if m.lm_head is not None)

    def _head_weight(self) -> torch.Tensor:
        # Read at call time: FSDP2 swaps the registered parameter between sharded and gathered.
        return self._head_part().lm_head.weight

    @contextlib.contextmanager
    def _head_gathered(self):
        """In training the head's FSDP group stays gathered after forward; without gradients
        FSDP2 reshards it, so evaluation gathers it around its use of the output weight."""
        part = self._head_part() if self.has_last else None
        if not isinstance(part, FSDPModule):
            yield
            return
        part.unshard()
        try:
            yield
        finally:
            part.reshard()

    def _head_loss(self, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return linear_cross_entropy(hidden, self._head_weight(), labels, self.chunk)

    def _global_mean(self, loss: torch.Tensor) -> torch.Tensor:
        """This rank's loss (valid on last-stage ranks) -> the mean over the global batch: one
        sum over each mesh dimension that splits the batch or the stages."""
        loss = loss.detach().float().reshape(())
        if not self.has_last:
            loss = torch.zeros_like(loss)
        for name in ("pp", "dp_replicate", "dp_shard"):
            if self.mesh is not None and self.mesh[name].size() > 1:
                dist.all_reduce(loss, group=self.mesh[name].get_group())
        return loss / self.layout.dp

    # -- training ---------------------------------------------------------------------------

    def forward_backward(self, tokens: torch.Tensor, labels: torch.Tensor, n_micro: int) -> torch.Tensor:
        """Forward and backward over this rank's batch in `n_micro` equal micro-batches (the
        pipeline schedule's own count under pipelining); gradients accumulate to those of the
        mean loss. Returns the global batch's mean loss, detached, on the device."""
        if self.schedule is not None:
            loss = self._pipeline_step(tokens, labels)
        else:
            loss = self._accumulate(tokens, labels, n_micro)
        self._reduce_partial_grads()
        self._sync_tied_embedding()
        return self._global_mean(loss)

    def _accumulate(self, tokens, labels, n_micro):
        model = self.model_parts[0]
        fsdp = hasattr(model, "set_requires_gradient_sync")
        total = torch.zeros((), device=self.device)
        # The kernel choice also covers backward, where recompute re-runs attention.
        with _sdpa_context(self.sdpa):
            for i, (tok, lab) in enumerate(zip(tokens.chunk(n_micro), labels.chunk(n_micro))):
                last = i == n_micro - 1
                if fsdp:  # reduce gradients once, after the last micro-batch
                    model.set_requires_gradient_sync(last)
                    if self.layout.zero_stage == 2 and self.layout.dp_shard > 1:
                        model.set_reshard_after_backward(last)
                with self._autocast():  # backward outside autocast
                    loss = self._head_loss(model(tok), lab) / n_micro
                loss.backward()
                total = total + loss.detach()
        return total

    def _pipeline_step(self, tokens, labels):
        losses: list[torch.Tensor] = []
        args = (tokens,) if self.has_first else ()
        with self._context():
            self.schedule.step(*args, target=labels if self.has_last else None, losses=losses)
        if not self.has_last:
            return torch.zeros((), device=self.device)
        return torch.stack(losses).mean()

    def _reduce_partial_grads(self) -> None:
        """Some DTensor gradients come out with another layout than their parameter: partial
        sums (LayerNorms under sequence parallelism, the vocab-parallel embedding). Bring each
        to its parameter's layout once, so optimizer, norm and checkpoint see the true gradient."""
        for m in self.model_parts:
            for p in m.parameters():
                g = p.grad
                if isinstance(g, DTensor) and tuple(g.placements) != tuple(p.placements):
                    p.grad = g.redistribute(g.device_mesh, p.placements)

    def _tied_params(self) -> list[nn.Parameter]:
        """Embedding and (untied) output weights held by this rank, when they live apart."""
        out = []
        for m in self.model_parts:
            if self.n_stages > 1 and m.tok_emb is not None:
                out.append(m.tok_emb.weight)
            if head_only(m):
                out.append(m.lm_head.weight)
        return out

    def _sync_tied_embedding(self) -> None:
        """The output projection's gradient and the embedding's are summed, so both copies of the
        tied weight take the same step (Megatron's embedding group)."""
        params = self._tied_params()
        if not params or any(p.grad is None for p in params):
            return
        local = [local_tensor(p.grad) for p in params]
        total = torch.stack(local).sum(0) if len(local) > 1 else local[0].clone()
        if self.embed_group is not None:
            dist.all_reduce(total, group=self.embed_group)
        for g in local:
            g.copy_(total)

    def clip_grad_norm(self, max_norm: float) -> torch.Tensor:
        """Global gradient norm over all ranks (each tied weight counted once), then clipping to
        `max_norm` (0: no clipping). Returns the norm before clipping, on the device."""
        seen = {id(m.lm_head.weight) for m in self.model_parts if head_only(m)}
        grads = []
        for m in self.model_parts:
            for p in m.parameters():
                if p.grad is not None and id(p) not in seen:
                    seen.add(id(p))
                    grads.append(p.grad)
        pp = self.mesh["pp"].get_group() if self.layout.pp > 1 else None
        norm = global_norm(grads, pp)
        clip_([p.grad for m in self.model_parts for p in m.parameters() if p.grad is not None],
              norm, max_norm)
        return norm

    # -- evaluation and inference ---------------------------------------------------------------

    def _forward_hidden(self, tokens: torch.Tensor) -> torch.Tensor | None:
        """The final LayerNorm's output for one whole batch, on last-stage ranks (else None)."""
        if self.schedule is None:
            return self.model_parts[0](tokens)
        key = tuple(tokens.shape)
        if key not in self._eval_schedules:  # stages learn activation shapes on first use
            self._eval_schedules[key] = build_eval_schedule(
                self.model_parts, self.stage_ids, self.n_stages, self.device,
                self.mesh["pp"].get_group())
        out = self._eval_schedules[key].eval(*((tokens,) if self.has_first else ()))
        return out if self.has_last else None

    @torch.no_grad()
    def eval_loss(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean loss of one batch (this rank's share), averaged over data-parallel ranks."""
        with self._context():
            hidden = self._forward_hidden(tokens)
            with self._head_gathered():
                loss = self._head_loss(hidden, labels) if hidden is not None else torch.zeros(())
        return self._global_mean(loss.to(self.device))

    @torch.no_grad()
    def forward_eval(self, tokens: torch.Tensor,
                     reduce: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Forward only, in any layout: `reduce` gets this batch's full-vocabulary fp32 logits
        (B, T, V) as a plain tensor on the ranks holding the last stage; its (small) result is
        returned on every rank of the model-parallel (pp x tp) group. Every rank of that group
        calls this with the same tokens; each data-parallel rank with its own."""
        was_training = self.model_parts[0].training
        self.train(False)
        try:
            with self._context():
                hidden = self._forward_hidden(tokens)
                logits = None
                if hidden is not None:
                    with self._head_gathered():
                        logits = full_logits(hidden, self._head_weight())
        finally:
            self.train(was_training)
        result = reduce(logits) if logits is not None else None  # outside autocast: fp32 stays
        if self.layout.pp > 1:
            pp_ranks = self.mesh["pp"].mesh.tolist()
            box = [result.cpu() if result is not None else None]
            dist.broadcast_object_list(box, src=pp_ranks[-1], group=self.mesh["pp"].get_group())
            result = box[0].to(self.device)
        return result

    def train(self, mode: bool = True) -> None:
        for m in self.model_parts:
            m.train(mode)

    # -- state ----------------------------------------------------------------------------------

    def model_state(self) -> ModelState:
        return ModelState(self.model_parts)

    def load_weights(self, path: str | Path) -> list[str]:
        """Load model weights only from a DCP checkpoint (a step dir, or a checkpoint dir with
        `latest`) written in any layout. Parameters that model transforms added and the
        checkpoint lacks keep their initial values; their names are returned."""
        import torch.distributed.checkpoint as dcp

        from hyperclova.train.checkpoint import resolve_load_shared, single_process

        step = resolve_load_shared(path)
        saved = {k.split(".", 1)[1] for k in
                 dcp.FileSystemReader(str(step)).read_metadata().state_dict_metadata
                 if k.startswith("model.")}
        mine = set(ModelState(self.model_parts).state_dict())
        missing = sorted(mine - saved)
        base = {EMB if k == HEAD else k for k in self.base_names}
        if lost := [k for k in missing if k in base]:
            raise UserError(f"{step}: the checkpoint has no weights for {lost[:5]}"
                            + (f" and {len(lost) - 5} more" if len(lost) > 5 else ""))
        with single_process():
            dcp.load({"model": ModelState(self.model_parts, keys=mine & saved)},
                     checkpoint_id=str(step))
        return missing

    def memory_line(self) -> str:
        from hyperclova.parallel.accounting import format_memory, memory_bytes

        return format_memory(self.layout.describe(), memory_bytes(self.model_parts))


def build_engine(cfg: Config, device: torch.device | str | None = None,
                 model_transforms: Sequence[ModelTransform] = ()) -> Engine:
    """Build this rank's part of the model for `cfg.parallel` on the running process group (one
    process needs none) and wrap it in an Engine. Each `model_transforms` function is applied in
    place to the plain model on the meta device, before any parallelism."""
    device = resolve_device(cfg) if device is None else torch.device(device)
    return Engine(cfg, device, build_parts(cfg, device, model_transforms))
