"""Step time of a layout: compute, pipeline bubble, and TP / PP / DP communication.

FLOPs follow Narayanan et al. 2021 (eq. 3): one forward of a GPT layer costs 24 b s h^2 + 4 b s^2 h
and the logits 2 b s h V; training is three forwards (forward + backward), four for the layers
with full recomputation. Model FLOPs (for MFU) never count recomputation; "hardware" FLOPs (what
Megatron-LM reports as TFLOP/s per GPU) do.

Step = (m + (p - 1)/v) * t_stage + t_pp + t_dp_exposed + t_optimizer, where t_stage is one micro-
batch through one pipeline rank's layers (GEMMs at an efficiency that grows with d/tp, elementwise
overhead, and TP collectives that are not overlapped), m micro-batches per step and v virtual
stages (Narayanan et al.'s bubble (p - 1)/(v m)).
"""
from __future__ import annotations

from dataclasses import dataclass

from hyperclova.config import ModelConfig
from hyperclova.plan.hardware import Cluster, Efficiency
from hyperclova.parallel.layout import Layout
from hyperclova.plan.memory import ModelStats, rank_params


def layer_forward_flops(cfg: ModelConfig, seqs: float = 1) -> float:
    s, h = cfg.seq_len, cfg.d_model
    return seqs * (24 * s * h * h + 4 * s * s * h)


def logits_forward_flops(cfg: ModelConfig, seqs: float = 1) -> float:
    return seqs * 2 * cfg.seq_len * cfg.d_model * cfg.vocab_size


def model_flops_per_seq(cfg: ModelConfig) -> float:
    """Training FLOPs of one sequence without recomputation: 72 s L h^2 (1 + s/6h + V/12Lh)."""
    return 3 * (cfg.n_layers * layer_forward_flops(cfg) + logits_forward_flops(cfg))


def hardware_flops_per_seq(cfg: ModelConfig, recompute: str) -> float:
    """FLOPs actually executed per sequence, recomputation included."""
    layer = layer_forward_flops(cfg)
    if recompute == "full":
        per_layer = 4 * layer
    elif recompute == "selective":  # the attention core (QK^T and AV, 4 s^2 h) runs twice
        per_layer = 3 * layer + 4 * cfg.seq_len ** 2 * cfg.d_model
    else:
        per_layer = 3 * layer
    return cfg.n_layers * per_layer + 3 * logits_forward_flops(cfg)


def layer_time(cfg: ModelConfig, lay: Layout, gpu, eff: Efficiency) -> float:
    """Compute time of one layer for one micro-batch on one TP rank, forward + backward."""
    b, t, s, h = lay.micro_batch_size, lay.tp, cfg.seq_len, cfg.d_model
    passes = 4 if lay.recompute == "full" else 3
    attn_passes = passes + (1 if lay.recompute == "selective" else 0)
    rate = gpu.peak_flops * gemm_efficiency(cfg, t, eff)
    t_gemm = passes * 24 * b * s * h * h / t / rate
    t_attn = attn_passes * 4 * b * s * s * h / t / (rate * eff.attention_factor)
    # LayerNorm, GeLU, dropout, residuals: memory bound. Without sequence parallelism the
    # 10 s b h of Korthikanti's 34 s b h that TP does not split run on every TP rank.
    share = 1 / t if lay.sequence_parallel else (10 + 24 / t) / 34
    t_elem = passes * eff.elementwise_bytes * b * s * h * share / (gpu.hbm_bw * eff.hbm_eff)
    return t_gemm + t_attn + t_elem


def gemm_efficiency(cfg: ModelConfig, tp: int, eff: Efficiency) -> float:
    width = cfg.d_model / tp
    return eff.gemm_max * width / (width + eff.gemm_half_width)


def ring_allreduce_time(nbytes: float, n: int, bw: float) -> float:
    return 0.0 if n <= 1 else 2 * (n - 1) / n * nbytes / bw


def ring_gather_time(nbytes: float, n: int, bw: float) -> float:
    """All-gather or reduce-scatter of a buffer of `nbytes` (full size) over n ranks."""
    return 0.0 if n <= 1 else (n - 1) / n * nbytes / bw


def _link_bw(group_span: int, cluster: Cluster, eff: Efficiency) -> float:
    """Per-GPU bandwidth of a collective whose members lie within `group_span` adjacent ranks."""
    if group_span <= cluster.gpus_per_node:
        return cluster.gpu.nvlink_bw * eff.nvlink_eff
    return cluster.gpu.ib_bw * eff.ib_eff


@dataclass(frozen=True)
class StepEstimate:
    n_micro: int  # micro-batches per pipeline per step
    t_stage: float  # one micro-batch through the slowest pipeline rank (compute + TP comm)
    t_tp: float  # TP collectives per step (inside t_pipeline)
    t_bubble: float
    t_pipeline: float  # (m + (p-1)/v) * t_stage
    t_pp: float  # pipeline send/recv per step
    t_dp: float  # exposed data-parallel / FSDP traffic per step
    t_optim: float
    step_time: float
    model_flops: float  # per step over the cluster, no recomputation
    hardware_flops: float  # per step over the cluster, with recomputation
    tokens_per_step: int
    internode_bytes: float  # sent by one GPU over InfiniBand per step (DP/FSDP and PP traffic)

    def mfu(self, world: int, peak: float) -> float:
        return self.model_flops / (self.step_time * world * peak)

    def hw_tflops_per_gpu(self, world: int) -> float:
        return self.hardware_flops / (self.step_time * world) / 1e12


def estimate_step(stats: ModelStats, lay: Layout, global_batch: int, cluster: Cluster,
                  eff: Efficiency) -> StepEstimate:
    cfg = stats.cfg
    b, t, p, v = lay.micro_batch_size, lay.tp, lay.pp, lay.vpp
    n_micro = global_batch // (lay.dp * b)
    gpu = cluster.gpu
    flops_rate = gpu.peak_flops * gemm_efficiency(cfg, t, eff)

    layers = cfg.n_layers / p
    t_compute = layers * layer_time(cfg, lay, gpu, eff)
    t_compute += 3 * logits_forward_flops(cfg, b) / t / flops_rate  # the last stage's head

    act = b * cfg.seq_len * cfg.d_model * eff.act_bytes
    collectives = 6 if lay.recompute == "full" else 4  # 2 fwd + 2 bwd (+ 2 in the recomputation)
    tp_bw = _link_bw(t, cluster, eff)
    t_tp_mb = layers * collectives * ring_allreduce_time(act, t, tp_bw)
    t_stage = t_compute + t_tp_mb
    t_pipeline = (n_micro + (p - 1) / v) * t_stage

    t_pp = pp_bytes = 0.0
    if p > 1:  # activations forward and gradients back across each of the v chunk boundaries;
        # with tp > 1 each rank sends 1/t and the receivers all-gather over NVLink (Megatron)
        stride = t * lay.dp
        pp_bytes = n_micro * 2 * v * (act / t)
        t_pp = pp_bytes / _link_bw(stride + 1, cluster, eff)
        if stride + 1 <= cluster.gpus_per_node:
            pp_bytes = 0.0

    n_rank = max(rank_params(stats, lay, 0), rank_params(stats, lay, p - 1))
    t_dp = _dp_time(n_rank, lay, t_stage, n_micro, cluster, eff)
    t_optim = n_rank / lay.dp_shard * 28 / (gpu.hbm_bw * eff.hbm_eff)  # AdamW: 7 fp32 r/w
    step = t_pipeline + t_pp + t_dp + t_optim
    return StepEstimate(
        n_micro=n_micro, t_stage=t_stage, t_tp=n_micro * t_tp_mb,
        t_bubble=(p - 1) / v * t_stage, t_pipeline=t_pipeline, t_pp=t_pp, t_dp=t_dp,
        t_optim=t_optim, step_time=step,
        model_flops=global_batch * model_flops_per_seq(cfg),
        hardware_flops=global_batch * hardware_flops_per_seq(cfg, lay.recompute),
        tokens_per_step=global_batch * cfg.seq_len,
        internode_bytes=pp_bytes + _dp_internode_bytes(n_rank, lay, n_micro, cluster, eff))


def _fsdp_gathers(lay: Layout, n_micro: int) -> int:
    """All-gathers of a rank's weights per step: with zero_stage 3 and no PP each micro-batch
    gathers the bf16 weights for forward and again for backward; a pipeline stage, or
    zero_stage 2, keeps them gathered for the whole step (hyperclova.parallel.data)."""
    return 1 if (lay.pp > 1 or lay.zero_stage == 2) else 2 * n_micro


def _dp_internode_bytes(n_rank: int, lay: Layout, n_micro: int, cluster: Cluster,
                        eff: Efficiency) -> float:
    """Bytes one GPU sends over InfiniBand per step for data parallelism: FSDP gathers and
    reduce-scatters when a shard group spans nodes, the replicas' all-reduce when they do."""
    node, ds, dr = cluster.gpus_per_node, lay.dp_shard, lay.dp_replicate
    out = 0.0
    if ds > 1 and lay.tp * ds > node:
        out += (ds - 1) / ds * n_rank * (_fsdp_gathers(lay, n_micro) * eff.gather_bytes
                                         + eff.grad_bytes)
    if dr > 1 and lay.tp * lay.dp > node:
        out += 2 * (dr - 1) / dr * n_rank / ds * eff.grad_bytes
    return out


def _dp_time(n_rank: int, lay: Layout, t_stage: float, n_micro: int, cluster: Cluster,
             eff: Efficiency) -> float:
    """Exposed gradient all-reduce (DDP) or all-gather + reduce-scatter (FSDP/HSDP) time."""
    # a DP group's members are tp ranks apart; dp_shard is nearer than dp_replicate on the mesh
    shard_bw = _link_bw(lay.tp * lay.dp_shard, cluster, eff)
    repl_bw = _link_bw(lay.tp * lay.dp, cluster, eff)
    backward = t_stage * (0.75 if lay.recompute == "full" else 2 / 3)
    if lay.dp_shard > 1:
        # gradients are reduce-scattered (fp32) once, after the last micro-batch
        gathers = _fsdp_gathers(lay, n_micro)
        t_gather = ring_gather_time(n_rank * eff.gather_bytes, lay.dp_shard, shard_bw)
        t_scatter = ring_gather_time(n_rank * eff.grad_bytes, lay.dp_shard, shard_bw)
        exposed = gathers * max(0.0, t_gather - eff.dp_overlap * t_stage / 2)
        exposed += max(0.0, t_scatter - eff.dp_overlap * backward)
    else:
        exposed = 0.0
    grads = n_rank / lay.dp_shard * eff.grad_bytes
    t_repl = ring_allreduce_time(grads, lay.dp_replicate, repl_bw)
    return exposed + max(0.0, t_repl - eff.dp_overlap * backward)
