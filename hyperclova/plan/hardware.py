"""GPUs, clusters and the efficiency constants of the throughput model.

Peak numbers are dense bf16 tensor-core FLOP/s and bus bandwidths from NVIDIA's data sheets; the
efficiency constants say how much of them real kernels reach. They were set once against Megatron-
LM's published A100 results (Narayanan et al. 2021, Table 1; see tests/plan/test_validation.py)
and are printed by `tools/plan.py --explain`.
"""
from __future__ import annotations

from dataclasses import dataclass

from hyperclova.errors import UserError

GiB = 1024**3


@dataclass(frozen=True)
class GPU:
    name: str
    memory: float  # bytes
    peak_flops: float  # dense bf16 FLOP/s
    hbm_bw: float  # bytes/s
    nvlink_bw: float  # bytes/s per GPU per direction inside a node
    ib_bw: float  # bytes/s per GPU per direction between nodes (one HCA per GPU, rail optimised)


GPUS = {
    # DGX A100: NVLink3 600 GB/s bidirectional per GPU, 8x HDR InfiniBand 200 Gb/s per node
    "a100-40gb": GPU("A100-SXM4-40GB", 40 * GiB, 312e12, 1.555e12, 300e9, 25e9),
    "a100-80gb": GPU("A100-SXM4-80GB", 80 * GiB, 312e12, 2.039e12, 300e9, 25e9),
    # DGX H100: NVLink4 900 GB/s bidirectional, 8x NDR 400 Gb/s
    "h100-80gb": GPU("H100-SXM5-80GB", 80 * GiB, 989e12, 3.35e12, 450e9, 50e9),
    "h200-141gb": GPU("H200-SXM-141GB", 141e9, 989e12, 4.8e12, 450e9, 50e9),
}


# Dense bf16 tensor-core peak FLOP/s from NVIDIA's data sheets (half of the "with sparsity"
# figures), by a substring of torch.cuda.get_device_name(); the first match wins, so the PCIe and
# NVL variants (lower clocks and power) come before their SXM namesakes.
PEAK_BF16_BY_NAME = (
    ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H200 NVL", 835e12), ("GH200", 989e12),
    ("H100", 989e12), ("H200", 989e12), ("H800", 989e12), ("B200", 2250e12),
    ("A100", 312e12), ("A800", 312e12), ("L40S", 362e12), ("L4", 121e12), ("A10G", 125e12),
    ("V100", 125e12),  # fp16: V100 has no bf16 (train.dtype=auto picks fp32 there)
)


def peak_bf16(device_name: str) -> float | None:
    """Data-sheet dense bf16 peak of a GPU by its CUDA device name, None when unknown."""
    for key, value in PEAK_BF16_BY_NAME:
        if key in device_name:
            return value
    return None


def get_gpu(name: str) -> GPU:
    key = name.strip().lower()
    if key not in GPUS:
        raise UserError(f"unknown GPU type {name!r}; choose one of {', '.join(GPUS)}")
    return GPUS[key]


@dataclass(frozen=True)
class Cluster:
    nodes: int
    gpus_per_node: int
    gpu: GPU

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node

    def describe(self) -> str:
        return f"{self.nodes} nodes x {self.gpus_per_node} {self.gpu.name} = {self.world_size} GPUs"


@dataclass(frozen=True)
class Efficiency:
    """Fractions of the data-sheet peaks that kernels reach (stated, not measured here)."""

    # GEMM throughput: gemm_max * w / (w + gemm_half_width), w = per-GPU hidden width d/tp.
    # Narrow shards (small d/tp) leave tensor cores idle; wide layers approach gemm_max.
    gemm_max: float = 0.70
    gemm_half_width: float = 128.0
    # the attention core (QK^T, softmax, AV) runs at this fraction of the GEMM rate
    attention_factor: float = 0.3
    # HBM bytes moved per element of s*b*h by one pass of a layer's non-GEMM ops
    elementwise_bytes: float = 60.0
    # NCCL bus bandwidth reached / link peak
    nvlink_eff: float = 0.75
    ib_eff: float = 0.85
    hbm_eff: float = 0.7
    # data-parallel gradient traffic hidden behind the last micro-batch's backward (0..1)
    dp_overlap: float = 0.5
    # bytes per element on the wire: activations bf16, gradients reduced in fp32, FSDP gathers bf16
    act_bytes: int = 2
    grad_bytes: int = 4
    gather_bytes: int = 2


@dataclass(frozen=True)
class MemoryModel:
    """Bytes per parameter of this engine: fp32 master weights, fp32 gradients, AdamW's two fp32
    moments, and a bf16 compute copy (FSDP2 mixed-precision all-gather / autocast) per layer."""

    param_bytes: int = 4
    grad_bytes: int = 4
    optim_bytes: int = 8
    compute_copy_bytes: int = 2
    act_bytes: int = 2  # activations stored in bf16 (Korthikanti et al. assume 16-bit)
    # CUDA context, NCCL buffers and allocator fragmentation, kept free on every GPU
    reserve: float = 4 * GiB


DEFAULT_MEMORY = MemoryModel()
