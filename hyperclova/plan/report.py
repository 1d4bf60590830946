"""Text output of the planner: the ranked table, the overrides of the best rows, the arithmetic."""
from __future__ import annotations

from dataclasses import asdict

from hyperclova.plan.hardware import GiB
from hyperclova.plan.memory import (
    head_activation_bytes,
    inflight_layers,
    layer_activation_bytes,
    model_stats,
    rank_params,
)
from hyperclova.plan.perf import (
    gemm_efficiency,
    hardware_flops_per_seq,
    layer_time,
    model_flops_per_seq,
)
from hyperclova.plan.search import Job, PlanRow

HEADER = (f"{'#':>3} {'tp':>2} {'pp':>2} {'vpp':>3} {'dp_r':>4} {'dp_s':>4} {'sp':>2} {'mbs':>3} "
          f"{'recomp':>9} {'mem GiB':>7} {'wts+opt':>7} {'act':>6} {'bubble':>6} {'tp s':>5} "
          f"{'pp s':>5} {'dp s':>5} {'step s':>7} {'TF/GPU':>6} {'MFU':>5} {'days':>7}")


def format_row(i: int, r: PlanRow) -> str:
    lay, m, s = r.layout, r.memory, r.step
    state = m.params + m.grads + m.optimizer + m.compute_copy + m.grad_accum
    return (f"{i:>3} {lay.tp:>2} {lay.pp:>2} {lay.vpp:>3} {lay.dp_replicate:>4} {lay.dp_shard:>4} "
            f"{'y' if lay.sequence_parallel else '-':>2} {lay.micro_batch_size:>3} "
            f"{lay.recompute:>9} {m.total / GiB:>7.1f} {state / GiB:>7.1f} "
            f"{m.activations / GiB:>6.1f} {r.bubble * 100:>5.1f}% {s.t_tp:>5.2f} {s.t_pp:>5.2f} "
            f"{s.t_dp:>5.2f} {s.step_time:>7.3f} {r.tflops:>6.1f} {r.mfu * 100:>4.1f}% "
            f"{r.days:>7.2f}" + ("" if r.fits else "  OOM"))


def format_table(job: Job, rows: list[PlanRow], top: int) -> str:
    fitting = sum(r.fits for r in rows)
    lines = [f"model {job.model.preset or 'custom'}: {model_stats(job.model).total:,} parameters, "
             f"seq {job.model.seq_len}, vocab {job.model.vocab_size}; {job.cluster.describe()}; "
             f"global batch {job.global_batch}; {job.tokens:.3g} tokens",
             f"{len(rows)} layouts evaluated, {fitting} fit in "
             f"{job.cluster.gpu.memory / GiB:.0f} GiB",
             HEADER]
    lines += [format_row(i + 1, r) for i, r in enumerate(rows[:top])]
    return "\n".join(lines)


def format_overrides(job: Job, rows: list[PlanRow], n: int) -> str:
    lines = []
    for i, r in enumerate(rows[:n]):
        if not r.fits:
            break
        model = f"model={job.model.preset} " if job.model.preset else ""
        lines.append(f"best #{i + 1}: {model}" + " ".join(r.layout.overrides(job.global_batch)))
    return "\n".join(lines) if lines else "no layout fits in memory: add GPUs or lower the batch"


def explain(job: Job, r: PlanRow) -> str:
    """The arithmetic behind one row, step by step."""
    cfg, lay, st, mem, s = job.model, r.layout, model_stats(job.model), job.mem, r.step
    gpu, eff = job.cluster.gpu, job.eff
    n_micro = s.n_micro
    stage = r.worst_stage
    n = rank_params(st, lay, stage)
    chunks = lay.rank_layers(stage, cfg.n_layers)
    sbh = cfg.seq_len * lay.micro_batch_size * cfg.d_model
    state = r.memory.params + r.memory.grads + r.memory.optimizer
    out = [
        f"== layout {' '.join(lay.overrides(job.global_batch))}",
        f"world = tp {lay.tp} x pp {lay.pp} x dp_replicate {lay.dp_replicate} x dp_shard "
        f"{lay.dp_shard} = {lay.world_size}; micro-batches per step m = {job.global_batch} / "
        f"({lay.dp} x {lay.micro_batch_size}) = {n_micro}",
        "-- parameters (model on the meta device; TP splits qkv/fc1 rows, proj/fc2 columns, vocab)",
        f"per block: {st.layer_split:,} split / tp {lay.tp} + {st.layer_replicated:,} replicated "
        f"= {st.layer_params(lay.tp):,}; token embedding {st.tok_emb:,} / tp; position "
        f"{st.pos_emb:,}; final norm {st.final_norm:,}",
        f"fullest stage {stage}: chunks {[f'{c[0]}-{c[-1]}' for c in chunks]}, {n:,} parameters",
        f"weights {mem.param_bytes} B + grads {mem.grad_bytes} B + AdamW {mem.optim_bytes} B per "
        f"parameter / dp_shard {lay.dp_shard} = {state / GiB:.2f} GiB; "
        f"bf16 compute copy {r.memory.compute_copy / GiB:.2f} GiB; unsharded gradient accumulation "
        f"{r.memory.grad_accum / GiB:.2f} GiB",
        "-- activations (Korthikanti et al. 2022, bytes per layer per micro-batch)",
        f"s b h = {sbh:,}; recompute {lay.recompute}, sequence parallel {lay.sequence_parallel}, "
        f"flash attention {job.flash}: {layer_activation_bytes(cfg, lay, job.flash) / 2**20:.1f} MiB",
        f"in flight on stage {stage}: {inflight_layers(cfg, lay, stage, n_micro):g} layer-micro-batches"
        f" -> {r.memory.activations / GiB:.2f} GiB (the last stage adds the output layer and loss: "
        f"{head_activation_bytes(cfg, lay, job.loss_chunk) / GiB:.2f} GiB with "
        f"{job.loss_chunk}-token chunks)",
        f"total with {mem.reserve / GiB:.0f} GiB reserve: {r.memory.total / GiB:.2f} GiB of "
        f"{gpu.memory / GiB:.0f} GiB -> {'fits' if r.fits else 'does NOT fit'}",
        "-- time (Narayanan et al. 2021)",
        f"model FLOPs per sequence 72 s L h^2 (1 + s/6h + V/12Lh) = {model_flops_per_seq(cfg):.4g}; "
        f"executed with recompute {lay.recompute}: {hardware_flops_per_seq(cfg, lay.recompute):.4g}",
        f"GEMM efficiency {eff.gemm_max} x w / (w + {eff.gemm_half_width:g}), w = h/tp = "
        f"{cfg.d_model / lay.tp:g} -> {gemm_efficiency(cfg, lay.tp, eff):.3f} of "
        f"{gpu.peak_flops / 1e12:.0f} TFLOP/s; one layer fwd+bwd on one rank: "
        f"{layer_time(cfg, lay, gpu, eff) * 1e3:.2f} ms",
        f"t_stage (one micro-batch, slowest rank, incl. TP all-reduces) = {s.t_stage * 1e3:.2f} ms",
        f"pipeline = (m + (p-1)/v) t_stage = ({n_micro} + {lay.pp - 1}/{lay.vpp}) x "
        f"{s.t_stage * 1e3:.2f} ms = {s.t_pipeline:.3f} s (bubble {r.bubble * 100:.1f}%, TP comm "
        f"{s.t_tp:.3f} s inside)",
        f"+ PP send/recv {s.t_pp:.3f} s + exposed DP/FSDP {s.t_dp:.3f} s + AdamW {s.t_optim:.3f} s "
        f"= step {s.step_time:.3f} s",
        f"{s.tokens_per_step:,} tokens/step -> {s.tokens_per_step / s.step_time:,.0f} tokens/s; "
        f"{r.tflops:.1f} TFLOP/s per GPU executed, MFU {r.mfu * 100:.1f}%; "
        f"{job.tokens:.3g} tokens in {r.days:.2f} days",
        "-- efficiency constants: " + ", ".join(f"{k}={v}" for k, v in asdict(eff).items()),
    ]
    return "\n".join(out)
