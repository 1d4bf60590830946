"""The pre-training loop.

    python -m hyperclova.train --config configs/demo.yaml train.steps=300
    torchrun --nproc_per_node 4 -m hyperclova.train --config ... parallel.tp=2 parallel.pp=2

Order of business: discover ranks and start the process group, build the engine (model parts for
this rank, parallelised by `cfg.parallel`), the optimizers and the data; resume from the newest
complete checkpoint; then step: lr from the schedule, forward/backward over the global batch in
micro-batches, clip, step, log, validate and checkpoint.

The hot loop never waits for the device: losses, gradient norms and the non-finite flags stay on
it and are read once every `logging.log_interval` steps (and before an evaluation or a save).
The non-finite check is still exact: a step whose loss or gradient norm is not finite makes no
update at all (the fused optimizer skips it on the device), and a run that must stop stops with
the parameters of the last good step, naming the step (docs/parallel.md).
"""
from __future__ import annotations

import math
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Sequence

import torch
import torch.distributed as dist

from hyperclova.config import Config, dump_yaml
from hyperclova.data import build_datasets, make_loader
from hyperclova.data.prefetch import Prefetcher, assemble
from hyperclova.errors import UserError
from hyperclova.launch import discover
from hyperclova.model.presets import count_params
from hyperclova.parallel.build import ModelTransform
from hyperclova.parallel.layout import accumulation_steps, check_layout, prepare_distributed
from hyperclova.train.checkpoint import CheckpointManager, RngState, TrainState
from hyperclova.train.engine import build_engine, resolve_device
from hyperclova.train.lock import DirectoryLock
from hyperclova.train.metrics import Metrics, flops_per_token, peak_flops, print0, print_ranks
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


class NonFiniteGuard:
    """Decides on the device, step by step, whether a step is skipped and whether the run must
    stop: `stop` mode stops at the first non-finite step; `skip` mode skips such steps until
    more than train.max_consecutive_skips in a row or train.max_skipped_steps in all."""

    def __init__(self, cfg: Config, device: torch.device, skipped_before: int):
        t = cfg.train
        self.skip_mode = t.on_nonfinite == "skip"
        self.max_total, self.max_run = t.max_skipped_steps, t.max_consecutive_skips
        self.stopped = torch.zeros((), dtype=torch.bool, device=device)
        self.run = torch.zeros((), dtype=torch.long, device=device)
        self.total = torch.full((), skipped_before, dtype=torch.long, device=device)

    def update(self, loss: torch.Tensor, norm: torch.Tensor):
        """(bad, skip, stopped) device flags of this step."""
        bad = ~(torch.isfinite(loss) & torch.isfinite(norm))
        if self.skip_mode:
            self.run = (self.run + 1) * bad
            self.total = self.total + bad
            self.stopped = self.stopped | (self.run > self.max_run) | (self.total > self.max_total)
        else:
            self.stopped = self.stopped | bad
        return bad, bad | self.stopped, self.stopped.clone()

    def reason(self, step: int, loss: float, norm: float, run: int, total: int) -> str:
        what = f"loss {loss}, grad norm {norm}"
        if not self.skip_mode:
            return (f"non-finite training loss at step {step} ({what}); lower train.lr, check the "
                    f"data, or set train.on_nonfinite=skip to skip such steps")
        limit = (f"{run} non-finite steps in a row > train.max_consecutive_skips={self.max_run}"
                 if run > self.max_run else
                 f"{total} skipped steps > train.max_skipped_steps={self.max_total}")
        return f"stopping at step {step} ({what}): {limit}; lower train.lr or check the data"


class Trainer:
    """The loop for pre-training; tuning (hyperclova/tune/trainer.py) runs the same loop with model
    transforms (adapters), its own data and a checkpoint of the trained parameters only."""

    def __init__(self, cfg: Config, model_transforms: Sequence[ModelTransform] = ()):
        self.cfg = cfg
        cfg.train.lr = cfg.lr  # the resolved learning rate, as printed and saved with checkpoints
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.device = resolve_device(cfg)
        init_distributed(cfg, self.device)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.lock = lock_checkpoint_dir(cfg)  # released by close(), or when the process ends

        self.engine = build_engine(cfg, self.device, model_transforms)
        # Dropout streams differ per pipeline stage, as in Megatron (same across data parallel).
        torch.manual_seed(cfg.train.seed + 100 * self.engine.coord.pp)
        self.dp_rank, self.dp_size = self.engine.dp_rank, self.engine.dp_size
        self.n_micro = accumulation_steps(cfg, self.dp_size)  # divisibility: check_layout
        self.optimizers = Optimizers(self.engine.model_parts, cfg, self.device.type)
        self.lr_at = schedule_for(cfg)
        self.state = TrainState()
        self.ckpt = CheckpointManager(cfg, {"model": self.engine.model_state(),
                                            "optim": self.optimizers, "train": self.state,
                                            "rng": RngState(self.rank)}, log=self.print)
        self.sample_tokens = cfg.model.seq_len  # tokens per sample (tuning pads shorter)
        self.n_params = count_params(cfg.model)
        self.flops_per_token = flops_per_token(cfg.model, self.n_params)
        self.peak = peak_flops(cfg, self.device)
        print_ranks(self.engine.memory_line())  # one line per distinct shard, naming its ranks

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
                             self.dp_rank, self.dp_size, cfg.data.num_workers, cfg.train.seed)
        return loader, valid_ds

    def evaluate(self, valid_ds) -> float:
        t = self.cfg.train
        loader = make_loader(valid_ds, t.micro_batch_size, 0, self.dp_rank, self.dp_size, 0, t.seed)
        self.engine.train(False)
        total = torch.zeros((), device=self.device)
        for _ in range(t.eval_iters):
            tokens, labels = (x.to(self.device) for x in assemble(loader, 1))
            total += self.engine.eval_loss(tokens, labels).float()
        self.engine.train(True)
        return total.item() / t.eval_iters

    def step(self, batches: Prefetcher, step: int) -> None:
        """One optimizer step, queued on the device; its numbers are read at the next flush."""
        cfg = self.cfg
        lr = self.lr_at(step)
        self.optimizers.set_lr(lr)
        tokens, labels = batches.next()
        loss = self.engine.forward_backward(tokens, labels, self.n_micro)
        norm = self.engine.clip_grad_norm(cfg.optim.grad_clip)
        bad, skip, stopped = self.guard.update(loss, norm)
        self.optimizers.step(skip)
        self.optimizers.zero_grad()
        self.pending.append((step, lr, torch.stack([loss, norm.float(), bad.float(),
                                                    stopped.float(), self.guard.run.float(),
                                                    self.guard.total.float()])))

    def flush(self, metrics: Metrics, losses: list[float]) -> None:
        """Read the pending steps' numbers from the device (one wait), log them, and stop the run
        if a step asked for it."""
        if not self.pending:
            return
        values = torch.stack([v for *_, v in self.pending]).tolist()
        elapsed = time.perf_counter() - self.window_start
        per_step = elapsed / len(self.pending)
        tokens_per_s = self.cfg.train.global_batch_size * self.sample_tokens / per_step
        pending, self.pending = self.pending, []
        self.window_start = time.perf_counter()
        for (step, lr, _), (loss, norm, bad, stopped, run, total) in zip(pending, values):
            if stopped:
                raise NonFiniteLoss(self.guard.reason(step, loss, norm, int(run), int(total)))
            record = {"loss": loss, "lr": lr, "grad_norm": norm, "tokens_per_s": tokens_per_s,
                      "step_time_s": per_step}
            if bad:
                self.state.skipped_steps += 1
                record["skipped"] = True
                metrics.print(f"warning: skipped step {step}: loss {loss}, grad norm {norm}")
            else:
                losses.append(loss)
                if self.peak:
                    record["mfu"] = self.flops_per_token * tokens_per_s / (self.peak * self.world)
            metrics.log(step, record)

    def run(self) -> dict:
        cfg = self.cfg
        if self.rank == 0:
            print("resolved config:\n" + dump_yaml(cfg), flush=True)
        resumed = self.restore()
        start_step = self.state.step
        loader, valid_ds = self.build_data()
        batches = Prefetcher(loader, self.n_micro, self.device)
        self.print(f"model: {self.n_params:,} parameters; global batch {cfg.train.global_batch_size} "
                   f"= micro {cfg.train.micro_batch_size} x accumulation {self.n_micro} x data "
                   f"parallel {self.dp_size}; world {self.world} on {self.device.type}")
        metrics = Metrics(cfg, self.rank == 0, cfg.train.steps, self.state.step)
        self.guard = NonFiniteGuard(cfg, self.device, self.state.skipped_steps)
        self.pending, self.window_start = [], time.perf_counter()
        losses: list[float] = []  # this invocation's training losses, for callers (tests, notebooks)
        interval = max(1, cfg.logging.log_interval)
        try:
            self.engine.train(True)
            last = cfg.train.steps
            if cfg.train.exit_after:  # a time-limited job: checkpoint and stop early
                last = min(last, self.state.step + cfg.train.exit_after)
            for step in range(self.state.step + 1, last + 1):
                self.step(batches, step)
                self.state.step = step
                self.state.consumed_samples += cfg.train.global_batch_size
                evaluate = valid_ds is not None and cfg.train.eval_interval and (
                    step % cfg.train.eval_interval == 0 or step == cfg.train.steps)
                save = cfg.checkpoint.interval and step % cfg.checkpoint.interval == 0 and step < last
                if step % interval == 0 or evaluate or save or step == last:
                    self.flush(metrics, losses)
                if evaluate:
                    vloss = self.evaluate(valid_ds)
                    metrics.log(step, {"loss": vloss, "ppl": math.exp(min(vloss, 50.0))}, "valid")
                if save:
                    self.ckpt.save(step)
                self.ckpt.poll()
                if evaluate or save:  # not training time: keep it out of tokens/s
                    self.window_start = time.perf_counter()
            self.flush(metrics, losses)
            final = None
            if self.state.step > start_step or not resumed:
                final = self.ckpt.save(self.state.step, wait=True)
                metrics.print(f"saved {final}")
        finally:
            batches.close()
            metrics.close()
        return {"losses": losses, "step": self.state.step, "checkpoint": final or resumed}


def train(cfg: Config, trainer_type: type[Trainer] = Trainer) -> dict:
    """One run of `trainer_type` (the Trainer, or a subclass such as the tuner's)."""
    trainer = None
    try:
        trainer = trainer_type(cfg)
        return trainer.run()
    finally:
        if trainer is not None:
            trainer.close()
        if dist.is_initialized():
            dist.destroy_process_group()
