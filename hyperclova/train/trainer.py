"""The pre-training loop.

    python -m hyperclova.train --config configs/demo.yaml train.steps=300
    torchrun --nproc_per_node 4 -m hyperclova.train --config ... parallel.tp=2 parallel.pp=2

Order of business: discover ranks and start the process group, build the engine (model parts for
this rank, parallelised by `cfg.parallel`), the optimizers and the data; resume from the newest
complete checkpoint; then step: lr from the schedule, forward/backward over the global batch in
micro-batches, clip, step, log, validate and checkpoint.
"""
from __future__ import annotations

import math
import os
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from hyperclova.config import Config, dump_yaml
from hyperclova.data import build_datasets, make_loader
from hyperclova.errors import UserError
from hyperclova.launch import discover
from hyperclova.model.presets import count_params
from hyperclova.parallel.mesh import accumulation_steps, check_layout, prepare_distributed
from hyperclova.train.checkpoint import CheckpointManager, RngState, TrainState
from hyperclova.train.engine import build_engine, resolve_device
from hyperclova.train.lock import DirectoryLock
from hyperclova.train.metrics import Metrics, flops_per_token, peak_flops, print0
from hyperclova.train.optim import Optimizers, schedule_for


class NonFiniteLoss(UserError):
    pass


def nccl_env_defaults(environ: dict, run_dir: str) -> dict[str, str]:
    """NCCL settings that make a failed or hung job diagnosable, for those the user has not set
    (under either of their names: torch 2.9 renamed the flight recorder's). The flight recorder
    keeps the last collectives of every rank and dumps them to <run_dir>/comm_trace/rank_N on a
    timeout; error handling 3 tears the process down without the communicator cleanup that can
    itself hang, which the dump needs."""
    trace = str(Path(run_dir).resolve() / "comm_trace" / "rank_")
    wanted = [(("TORCH_NCCL_ASYNC_ERROR_HANDLING",), "3"),
              (("TORCH_FR_BUFFER_SIZE", "TORCH_NCCL_TRACE_BUFFER_SIZE"), "20000"),
              (("TORCH_NCCL_DUMP_ON_TIMEOUT",), "1"),
              (("TORCH_FR_DUMP_TEMP_FILE", "TORCH_NCCL_DEBUG_INFO_TEMP_FILE"), trace)]
    return {name: value for names, value in wanted if not any(n in environ for n in names)
            for name in names}


def init_distributed(cfg: Config, device: torch.device) -> None:
    """Start the default process group (also for one process: DCP and the datasets use it)."""
    if dist.is_initialized():  # started by the caller (tests, notebooks): still check the layout
        check_layout(cfg, dist.get_world_size())
        return
    env = discover()
    prepare_distributed(cfg, env.world_size)  # reject a bad layout before any process-group work
    backend, device_id = "gloo", None
    if device.type == "cuda":
        backend, device_id = "nccl", torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device_id)
        defaults = nccl_env_defaults(os.environ, cfg.logging.run_dir)
        if defaults:
            Path(cfg.logging.run_dir, "comm_trace").mkdir(parents=True, exist_ok=True)
            os.environ.update(defaults)
    # device_id binds this rank's communicator to its GPU at once (no device guessing later)
    dist.init_process_group(backend, rank=env.rank, world_size=env.world_size, device_id=device_id,
                            timeout=timedelta(seconds=cfg.train.dist_timeout_s))


def lock_checkpoint_dir(cfg: Config) -> DirectoryLock | None:
    """Rank 0 locks the run's checkpoint directory (hyperclova/train/lock.py); every rank learns
    whether it may go on, so a refused job stops as one. Collective."""
    if not cfg.checkpoint.lock:
        return None
    lock, error = None, None
    if dist.get_rank() == 0:
        try:
            lock = DirectoryLock(cfg.checkpoint_dir, log=print0)
        except UserError as e:
            error = e
    if dist.get_world_size() > 1:
        box = [error]
        dist.broadcast_object_list(box, src=0)
        error = box[0]
    if error:
        raise error
    return lock


def _next_batch(loader, n_micro: int, device: torch.device):
    """n_micro micro-batches stacked into one (n_micro*micro, T) batch; masked labels -> -100."""
    tokens, labels = [], []
    for _ in range(n_micro):
        try:
            mb = next(loader)
        except StopIteration:
            raise UserError("the training data ran out before train.steps; add data or lower "
                            "train.steps") from None
        lab = mb["labels"].clone()
        if "loss_mask" in mb:
            lab[mb["loss_mask"] == 0] = -100
        tokens.append(mb["tokens"])
        labels.append(lab)
    return torch.cat(tokens).to(device), torch.cat(labels).to(device)


class Trainer:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.device = resolve_device(cfg)
        init_distributed(cfg, self.device)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.lock = lock_checkpoint_dir(cfg)  # released by close(), or when the process ends
        torch.manual_seed(cfg.train.seed)

        self.engine = build_engine(cfg, self.device)
        self.dp_rank, self.dp_size = self.engine.layout.dp_rank, self.engine.layout.dp_size
        self.n_micro = accumulation_steps(cfg, self.dp_size)  # divisibility: check_layout
        self.optimizers = Optimizers(self.engine.model_parts, cfg, self.device.type)
        self.lr_at = schedule_for(cfg)
        self.state = TrainState()
        self.ckpt = CheckpointManager(cfg, {"model": self.engine.model_state(),
                                            "optim": self.optimizers, "train": self.state,
                                            "rng": RngState(self.rank)}, log=self.print)
        self.n_params = count_params(cfg.model)
        self.flops_per_token = flops_per_token(cfg.model, self.n_params)
        self.peak = peak_flops(cfg, self.device)

    def print(self, text: str) -> None:
        print0(text)

    def close(self) -> None:
        self.ckpt.close()
        if self.lock is not None:
            self.lock.release()

    def restore(self):
        cfg = self.cfg
        resumed = self.ckpt.resume() if cfg.checkpoint.resume else None
        if resumed:
            self.print(f"resumed from {resumed} at step {self.state.step} "
                       f"({self.state.consumed_samples} samples consumed)")
        elif cfg.checkpoint.load:
            try:
                path = self.ckpt.resolve_load(cfg.checkpoint.load)
            except UserError as e:
                raise UserError(f"checkpoint.load: {e}") from None
            self.ckpt.load(path, groups={"model"})
            self.print(f"initialised weights from {path}")
        return resumed

    def build_data(self):
        cfg = self.cfg
        valid_samples = cfg.train.eval_iters * cfg.train.micro_batch_size * self.dp_size
        train_ds, valid_ds = build_datasets(
            cfg.data, cfg.model.seq_len, cfg.train.seed,
            train_samples=cfg.train.steps * cfg.train.global_batch_size,
            valid_samples=valid_samples if cfg.train.eval_interval > 0 else 0,
            model_vocab_size=cfg.model.vocab_size)
        loader = make_loader(train_ds, cfg.train.micro_batch_size, self.state.consumed_samples,
                             self.dp_rank, self.dp_size, cfg.data.num_workers)
        return loader, valid_ds

    def evaluate(self, valid_ds) -> float:
        t = self.cfg.train
        loader = make_loader(valid_ds, t.micro_batch_size, 0, self.dp_rank, self.dp_size, 0)
        self.engine.train(False)
        total = torch.zeros((), device=self.device)
        for _ in range(t.eval_iters):
            tokens, labels = _next_batch(loader, 1, self.device)
            total += self.engine.eval_loss(tokens, labels).float()
        self.engine.train(True)
        return total.item() / t.eval_iters

    def step(self, loader, step: int) -> dict | None:
        cfg = self.cfg
        lr = self.lr_at(step)
        self.optimizers.set_lr(lr)
        tokens, labels = _next_batch(loader, self.n_micro, self.device)
        loss = self.engine.forward_backward(tokens, labels, self.n_micro).item()
        grad_norm = self.engine.clip_grad_norm(cfg.optim.grad_clip).item()
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            self.optimizers.zero_grad()
            what = f"loss {loss}, grad norm {grad_norm}"
            if cfg.train.on_nonfinite == "stop":
                raise NonFiniteLoss(
                    f"non-finite training loss at step {step} ({what}); lower train.lr, check the "
                    f"data, or set train.on_nonfinite=skip to skip such steps")
            self.state.skipped_steps += 1
            self.print(f"warning: skipped step {step}: {what}")
            return None
        self.optimizers.step()
        self.optimizers.zero_grad()
        return {"loss": loss, "lr": lr, "grad_norm": grad_norm}

    def run(self) -> dict:
        cfg = self.cfg
        if self.rank == 0:
            print("resolved config:\n" + dump_yaml(cfg), flush=True)
        resumed = self.restore()
        start_step = self.state.step
        loader, valid_ds = self.build_data()
        self.print(f"model: {self.n_params:,} parameters; global batch {cfg.train.global_batch_size} "
                   f"= micro {cfg.train.micro_batch_size} x accumulation {self.n_micro} x data "
                   f"parallel {self.dp_size}; world {self.world} on {self.device.type}")
        metrics = Metrics(cfg, self.rank == 0, cfg.train.steps, self.state.step)
        tokens_per_step = cfg.train.global_batch_size * cfg.model.seq_len
        losses = []  # this invocation's training losses, for callers (tests, notebooks)
        try:
            self.engine.train(True)
            last = cfg.train.steps
            if cfg.train.exit_after:  # a time-limited job: checkpoint and stop early
                last = min(last, self.state.step + cfg.train.exit_after)
            for step in range(self.state.step + 1, last + 1):
                t0 = time.perf_counter()
                record = self.step(loader, step)
                self.state.step = step
                self.state.consumed_samples += cfg.train.global_batch_size
                if record is not None:
                    dt = time.perf_counter() - t0
                    record["tokens_per_s"] = tokens_per_step / dt
                    record["step_time_s"] = dt
                    if self.peak:
                        record["mfu"] = self.flops_per_token * record["tokens_per_s"] / (self.peak * self.world)
                    losses.append(record["loss"])
                    metrics.log(step, record)
                if valid_ds is not None and cfg.train.eval_interval and (
                        step % cfg.train.eval_interval == 0 or step == cfg.train.steps):
                    vloss = self.evaluate(valid_ds)
                    metrics.log(step, {"loss": vloss, "ppl": math.exp(min(vloss, 50.0))}, "valid")
                if cfg.checkpoint.interval and step % cfg.checkpoint.interval == 0 and step < last:
                    self.ckpt.save(step)
                self.ckpt.poll()
            final = None
            if self.state.step > start_step or not resumed:
                final = self.ckpt.save(self.state.step, wait=True)
                metrics.print(f"saved {final}")
        finally:
            metrics.close()
        return {"losses": losses, "step": self.state.step, "checkpoint": final or resumed}


def train(cfg: Config) -> dict:
    trainer = None
    try:
        trainer = Trainer(cfg)
        return trainer.run()
    finally:
        if trainer is not None:
            trainer.close()
        if dist.is_initialized():
            dist.destroy_process_group()
