"""The parallel engine: the same interface as the single-device `Engine`, for any layout of
pipeline x data (DDP/FSDP2) x tensor(+sequence) parallelism on one DeviceMesh.

Order of construction (DESIGN §2): cut pipeline stages -> tensor/sequence parallel -> activation
recompute -> torch.compile per block -> FSDP2/DDP. The loss it returns is the global-batch mean
(taken from the last pipeline stage, averaged over data-parallel ranks), as on one device.
"""
from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.tensor import DTensor
from torch.distributed.tensor.parallel import loss_parallel

from hyperclova.config import Config
from hyperclova.model.gpt import GPT, build_model
from hyperclova.parallel.accounting import format_memory, local_tensor, memory_bytes
from hyperclova.parallel.data import apply_dp
from hyperclova.parallel.mesh import ParallelDims, check_layout, pipeline_microbatches
from hyperclova.parallel.pipeline import (
    build_eval_schedule,
    build_schedule,
    cut_stage,
    stage_ids,
    tied_embedding_groups,
)
from hyperclova.parallel.recompute import apply_block_transforms
from hyperclova.parallel.tensor import apply_tp
from hyperclova.train.engine import Engine, Layout, autocast_dtype_for, cross_entropy, head_only

# Below this many parameters every rank initialises the whole model from the seed, exactly as one
# device does, and keeps its part: any layout then starts from the same weights. Above it, each
# stage initialises only itself (use checkpoint.load with a seed checkpoint for equal starts).
EXACT_INIT_MAX_PARAMS = 2_000_000_000


class ParallelEngine(Engine):
    def __init__(self, cfg: Config, device: torch.device, dims: ParallelDims, mesh,
                 model_parts: list[GPT], stage_idx: list[int], n_stages: int):
        # FSDP2/replicate cast to bf16 themselves; autocast covers layouts without them.
        autocast = None if dims.dp > 1 else autocast_dtype_for(cfg, device)
        super().__init__(model_parts, cfg, device, autocast,
                         Layout(dp_rank=dims.dp_rank(mesh), dp_size=dims.dp))
        self.dims, self.mesh = dims, mesh
        self.stage_idx, self.n_stages = stage_idx, n_stages
        self.has_first = 0 in stage_idx
        self.has_last = n_stages - 1 in stage_idx
        self.schedule = self.eval_schedule = self.embed_group = None
        if dims.pp > 1:
            self._init_pipeline()

    def _init_pipeline(self) -> None:
        p = self.cfg.parallel
        group = self.mesh["pp"].get_group()
        n_micro = pipeline_microbatches(self.cfg, self.dims.dp)
        args = (self.model_parts, self.stage_idx, self.n_stages, self.device, group, p.schedule)
        self.schedule = build_schedule(*args, n_micro, self._loss)
        self.eval_schedule = build_eval_schedule(*args, self._loss)
        last_rank = (self.n_stages - 1) % p.pp  # stage s runs on pipeline rank s % pp
        self.embed_group = tied_embedding_groups(self.mesh, 0, last_rank)

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _loss(logits, labels):
        return cross_entropy(logits, labels)

    def _context(self, loss: bool = True, autocast: bool = True):
        """loss_parallel (vocab-sharded cross-entropy, forward and backward) and/or autocast."""
        stack = contextlib.ExitStack()
        if loss and self.dims.tp > 1:
            stack.enter_context(loss_parallel())
        if autocast and self.autocast_dtype is not None:
            stack.enter_context(torch.autocast(self.device.type, dtype=self.autocast_dtype))
        return stack

    def _global_mean(self, loss: torch.Tensor) -> torch.Tensor:
        """This rank's loss (valid on last-stage ranks) -> the mean over the global batch."""
        if isinstance(loss, DTensor):
            loss = loss.full_tensor()
        loss = loss.detach().float().reshape(())
        if self.dims.pp > 1:
            if not self.has_last:
                loss = torch.zeros_like(loss)
            dist.all_reduce(loss, group=self.mesh["pp"].get_group())
        for name in ("dp_replicate", "dp_shard"):
            if self.mesh[name].size() > 1:
                dist.all_reduce(loss, group=self.mesh[name].get_group())
        loss /= self.dims.dp
        return loss

    # -- the Engine interface -------------------------------------------------------------

    def forward_backward(self, tokens: torch.Tensor, labels: torch.Tensor, n_micro: int) -> torch.Tensor:
        if self.dims.pp > 1:
            loss = self._pipeline_step(tokens, labels)
        else:
            loss = self._accumulate(tokens, labels, n_micro)
        self._reduce_partial_grads()
        self._sync_tied_embedding()
        return self._global_mean(loss)

    def _accumulate(self, tokens, labels, n_micro):
        model = self.model_parts[0]
        total = torch.zeros((), device=self.device)
        for i, (tok, lab) in enumerate(zip(tokens.chunk(n_micro), labels.chunk(n_micro))):
            if hasattr(model, "set_requires_gradient_sync"):  # reduce gradients once, at the end
                model.set_requires_gradient_sync(i == n_micro - 1)
            with self._context(autocast=False):  # backward outside autocast
                with self._context(loss=False):
                    loss = cross_entropy(model(tok), lab) / n_micro
                loss.backward()
            total = total + (loss.full_tensor() if isinstance(loss, DTensor) else loss).detach()
        return total

    def _pipeline_step(self, tokens, labels):
        losses: list[torch.Tensor] = []
        args = (tokens,) if self.has_first else ()
        with self._context():
            self.schedule.step(*args, target=labels if self.has_last else None, losses=losses)
        if not self.has_last:
            return torch.zeros((), device=self.device)
        return torch.stack([l.full_tensor() if isinstance(l, DTensor) else l for l in losses]).mean()

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
        total = sum(local_tensor(p.grad) for p in params)
        if self.embed_group is not None:
            dist.all_reduce(total, group=self.embed_group)
        for p in params:
            local_tensor(p.grad).copy_(total)

    @torch.no_grad()
    def eval_loss(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.dims.pp > 1:
            losses: list[torch.Tensor] = []
            args = (tokens,) if self.has_first else ()
            with self._context():
                self.eval_schedule.eval(*args, target=labels if self.has_last else None,
                                        losses=losses)
            loss = losses[0] if self.has_last else torch.zeros((), device=self.device)
        else:
            with self._context():
                loss = cross_entropy(self.model_parts[0](tokens), labels)
        return self._global_mean(loss)

    @torch.no_grad()
    def clip_grad_norm(self, max_norm: float) -> torch.Tensor:
        """Global gradient norm over all ranks (each tied weight counted once), then clipping."""
        skip = {id(m.lm_head.weight) for m in self.model_parts if head_only(m)}
        grads = [p.grad for m in self.model_parts for p in m.parameters()
                 if p.grad is not None and id(p) not in skip]
        norm = _global_norm(grads, self.mesh["pp"].get_group() if self.dims.pp > 1 else None,
                            self.device)
        if max_norm > 0:
            coef = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
            for m in self.model_parts:
                for p in m.parameters():
                    if p.grad is not None:
                        local_tensor(p.grad).mul_(coef.to(local_tensor(p.grad).dtype))
        return norm


def _global_norm(grads, pp_group, device) -> torch.Tensor:
    """L2 norm of gradients sharded over several meshes: squares are summed per (mesh, sharded
    dims) and reduced over exactly the dims they are sharded on, then over pipeline stages."""
    sums: dict = {}
    for g in grads:
        if isinstance(g, DTensor):
            dims = tuple(i for i, pl in enumerate(g.placements) if not pl.is_replicate())
            key = (id(g.device_mesh), dims)
            mesh = g.device_mesh
        else:
            key, mesh, dims = None, None, ()
        sq = local_tensor(g).detach().float().pow(2).sum()
        prev = sums.get(key)
        sums[key] = (mesh, dims, sq if prev is None else prev[2] + sq)
    total = torch.zeros((), device=device)
    for mesh, dims, sq in sums.values():
        for d in dims:
            dist.all_reduce(sq, group=mesh.get_group(d))
        total = total + sq
    if pp_group is not None:
        dist.all_reduce(total, group=pp_group)
    return total.sqrt()


def _init_parts(cfg: Config, device: torch.device, ids: list[int], n_stages: int) -> list[GPT]:
    from hyperclova.model.presets import count_params

    if n_stages == 1:
        return [build_model(cfg.model, device=device, seed=cfg.train.seed)]
    exact = count_params(cfg.model) <= EXACT_INIT_MAX_PARAMS
    full = build_model(cfg.model, device=device, seed=cfg.train.seed) if exact else None
    parts = []
    for s in ids:
        part = cut_stage(cfg.model, s, n_stages)
        part.to_empty(device=device)
        if full is not None:
            part.load_state_dict(full.state_dict(), strict=False)
        else:
            gen = torch.Generator(device=device).manual_seed(cfg.train.seed + 1009 * s)
            part.init_weights(gen)
        parts.append(part)
    return parts


def build_parallel_engine(cfg: Config, device: torch.device) -> ParallelEngine:
    """Build this rank's model parts for `cfg.parallel` on the running default process group."""
    dims = check_layout(cfg, dist.get_world_size())
    p = cfg.parallel
    mesh = dims.build_mesh(device.type)
    n_stages = p.pp * p.vpp
    ids = stage_ids(mesh["pp"].get_local_rank(), p.pp, p.vpp) if p.pp > 1 else [0]
    parts = _init_parts(cfg, device, ids, n_stages)
    mp_dtype = autocast_dtype_for(cfg, device)
    for part in parts:
        if dims.tp > 1:
            apply_tp(part, mesh["tp"], p.sequence_parallel)
        apply_block_transforms(part, p.recompute, p.compile)
        if dims.dp > 1:
            apply_dp(part, mesh, dims, mp_dtype, reshard_after_forward=p.pp == 1)
    engine = ParallelEngine(cfg, device, dims, mesh, parts, ids, n_stages)
    if full_init_needs_tie(cfg) and engine._tied_params():
        _copy_embedding_to_head(engine)
    layout = f"pp{dims.pp} dp_replicate{dims.dp_replicate} dp_shard{dims.dp_shard} tp{dims.tp}"
    print(format_memory(dist.get_rank(), layout, memory_bytes(parts)), flush=True)
    return engine


def full_init_needs_tie(cfg: Config) -> bool:
    from hyperclova.model.presets import count_params

    return count_params(cfg.model) > EXACT_INIT_MAX_PARAMS and cfg.parallel.pp > 1


@torch.no_grad()
def _copy_embedding_to_head(engine: ParallelEngine) -> None:
    """Stage-local initialisation drew the head separately: give it the embedding's values."""
    params = engine._tied_params()
    emb = [local_tensor(p) for m in engine.model_parts if m.tok_emb is not None
           for p in [m.tok_emb.weight]]
    value = emb[0].clone() if emb else torch.zeros_like(local_tensor(params[0]))
    if engine.embed_group is not None:
        dist.all_reduce(value, group=engine.embed_group)
    for p in params:
        local_tensor(p).copy_(value)
