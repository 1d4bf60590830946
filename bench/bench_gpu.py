"""The GPU benchmark: training tokens/s, MFU and peak memory of the 350M and 1.3B presets at
sequence 2048 in bf16 on one GPU, side by side with transformers' GPT2LMHeadModel of identical
dimensions and, when installed, megatron-core's GPTModel (local layer spec, no apex/TE).

    python bench/bench_gpu.py --out bench_gpu.jsonl          # one H100/H200: under 8 minutes
    python bench/bench_gpu.py --smoke --out /tmp/smoke.jsonl  # CPU, tiny sizes, seconds (tests)

It writes one JSON line per measurement as soon as it has it, so a run cut short keeps what was
measured; a case that fails writes its error and the run goes on; cases left when --budget-s runs
out are written as skipped. Lines, by "kind":
  env       torch, device, data-sheet bf16 peak
  gemm      a bf16 matmul's TFLOP/s: the ceiling real kernels reach on this GPU
  train     impl (hyperclova / hf_gpt2 / megatron_core), preset, compile, recompute, micro-batch,
            tokens/s, MFU against the data sheet and against the GEMM ceiling, peak memory
  equality  fp32 losses of 4 steps on the CPU and on the GPU from the same weights
Our model is built and stepped exactly as the trainer does it: build_engine (the one build path),
forward_backward with the chunked output layer + loss, clip_grad_norm, fused AdamW.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hyperclova.config import Config, ModelConfig, load_config  # noqa: E402
from hyperclova.model.presets import PRESETS, count_params  # noqa: E402
from hyperclova.plan.hardware import peak_bf16  # noqa: E402
from hyperclova.train.metrics import flops_per_token  # noqa: E402

SMOKE_MODEL = ModelConfig(preset="smoke", n_layers=2, d_model=64, n_heads=4, vocab_size=512,
                          seq_len=64)


class Bench:
    def __init__(self, args):
        self.args = args
        self.smoke = args.smoke
        self.device = torch.device("cpu" if args.smoke else "cuda")
        self.out = open(args.out, "a", encoding="utf-8")
        self.deadline = time.monotonic() + args.budget_s
        self.gemm_tflops = None

    def write(self, **row) -> None:
        row["time"] = round(time.time(), 1)
        self.out.write(json.dumps(row) + "\n")
        self.out.flush()
        print(json.dumps(row), flush=True)

    def case(self, name: str, fn, **meta) -> None:
        if time.monotonic() > self.deadline:
            self.write(kind="skip", case=name, reason="--budget-s used up", **meta)
            return
        try:
            fn()
        except Exception as e:  # a benchmark case failing must not lose the others
            self.write(kind="error", case=name, error=f"{type(e).__name__}: {e}"[:500], **meta)
        finally:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    # -- sync and memory --------------------------------------------------------------------

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float | None:
        return torch.cuda.max_memory_allocated() / 2**30 if self.device.type == "cuda" else None

    # -- sections ---------------------------------------------------------------------------

    def env(self) -> None:
        name = torch.cuda.get_device_name() if self.device.type == "cuda" else platform.processor()
        self.write(kind="env", torch=torch.__version__, device=name, smoke=self.smoke,
                   peak_bf16_tflops=(peak_bf16(name) or 0) / 1e12 or None,
                   capability=(list(torch.cuda.get_device_capability())
                               if self.device.type == "cuda" else None))

    def gemm(self) -> None:
        n = 256 if self.smoke else 8192
        dtype = torch.float32 if self.smoke else torch.bfloat16
        a, b = (torch.randn(n, n, device=self.device, dtype=dtype) for _ in range(2))
        for _ in range(3):
            a @ b
        self.sync()
        reps = 3 if self.smoke else 50
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        self.sync()
        self.gemm_tflops = 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12
        self.write(kind="gemm", n=n, dtype=str(dtype), tflops=self.gemm_tflops)

    def model_cfg(self, preset: str) -> ModelConfig:
        return SMOKE_MODEL if self.smoke else PRESETS[preset]

    def batch(self, cfg: ModelConfig, micro: int):
        g = torch.Generator().manual_seed(0)
        seq = torch.randint(0, cfg.vocab_size, (micro, cfg.seq_len + 1), generator=g)
        return seq[:, :-1].to(self.device), seq[:, 1:].to(self.device)

    def timed(self, step, n_warmup: int, n_steps: int) -> tuple[float, float]:
        """(seconds per step, last loss) of `step()`, after warm-up (and compilation)."""
        for _ in range(n_warmup):
            step()
        self.sync()
        self.reset_peak()
        t0 = time.perf_counter()
        loss = None
        for _ in range(n_steps):
            loss = step()
        self.sync()
        return (time.perf_counter() - t0) / n_steps, float(loss)

    def report(self, impl: str, preset: str, cfg: ModelConfig, micro: int, dt: float, loss: float,
               **meta) -> None:
        tokens_s = micro * cfg.seq_len / dt
        flops = flops_per_token(cfg, count_params(cfg)) * tokens_s
        peak = None if self.smoke else peak_bf16(torch.cuda.get_device_name())
        self.write(kind="train", impl=impl, preset=preset, micro_batch=micro, seq=cfg.seq_len,
                   tokens_per_s=tokens_s, step_s=dt, loss=loss, tflops=flops / 1e12,
                   mfu=flops / peak if peak else None,
                   mfu_vs_gemm=flops / 1e12 / self.gemm_tflops if self.gemm_tflops else None,
                   peak_mem_gib=self.peak_gib(), **meta)

    def ours(self, preset: str, micro: int, compile: bool, recompute: str) -> None:
        from hyperclova.train.engine import build_engine
        from hyperclova.train.optim import Optimizers

        cfg = self.model_cfg(preset)
        run = Config(model=cfg)
        run.train.device, run.train.dtype = self.device.type, "fp32" if self.smoke else "bf16"
        run.train.micro_batch_size = run.train.global_batch_size = micro
        run.parallel.compile, run.parallel.recompute = compile, recompute
        engine = build_engine(run, self.device)
        opt = Optimizers(engine.model_parts, run, self.device.type)
        tokens, labels = self.batch(cfg, micro)

        def step():
            loss = engine.forward_backward(tokens, labels, 1)
            engine.clip_grad_norm(1.0)
            opt.step()
            opt.zero_grad()
            return loss
        dt, loss = self.timed(step, 2 if self.smoke else 3, 2 if self.smoke else 8)
        self.report("hyperclova", preset, cfg, micro, dt, loss, compile=compile,
                    recompute=recompute, loss_chunk_tokens=run.train.loss_chunk_tokens)

    def hf(self, preset: str, micro: int, compile: bool) -> None:
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = self.model_cfg(preset)
        hf_cfg = GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.seq_len, n_embd=cfg.d_model,
                            n_layer=cfg.n_layers, n_head=cfg.n_heads, activation_function="gelu",
                            layer_norm_epsilon=cfg.ln_eps, resid_pdrop=0.0, embd_pdrop=0.0,
                            attn_pdrop=0.0, tie_word_embeddings=True, bos_token_id=0,
                            eos_token_id=0)
        model = GPT2LMHeadModel(hf_cfg).to(self.device).train()
        fwd = torch.compile(model) if compile else model
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        tokens, labels = self.batch(cfg, micro)
        dtype = None if self.smoke else torch.bfloat16

        def step():
            with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
                logits = fwd(input_ids=tokens).logits
                loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss.detach()
        dt, loss = self.timed(step, 2 if self.smoke else 3, 2 if self.smoke else 8)
        self.report("hf_gpt2", preset, cfg, micro, dt, loss, compile=compile, recompute="none")

    def megatron(self, preset: str, micro: int) -> None:
        if self.device.type != "cuda":
            self.write(kind="skip", case=f"megatron_core {preset}", reason="needs CUDA")
            return
        try:
            from megatron.core import parallel_state
            from megatron.core.models.gpt import GPTModel
            from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
            from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed
            from megatron.core.transformer.transformer_config import TransformerConfig
        except ImportError as e:
            self.write(kind="skip", case=f"megatron_core {preset}", reason=f"not installed: {e}")
            return
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{self.args.port}",
                                    rank=0, world_size=1)
        if not parallel_state.model_parallel_is_initialized():
            parallel_state.initialize_model_parallel(1, 1)
            model_parallel_cuda_manual_seed(0)
        cfg = self.model_cfg(preset)
        tcfg = TransformerConfig(num_layers=cfg.n_layers, hidden_size=cfg.d_model,
                                 num_attention_heads=cfg.n_heads, ffn_hidden_size=cfg.d_ff,
                                 layernorm_epsilon=cfg.ln_eps, hidden_dropout=0.0,
                                 attention_dropout=0.0, bias_activation_fusion=False,
                                 gated_linear_unit=False)
        model = GPTModel(config=tcfg, transformer_layer_spec=get_gpt_layer_local_spec(),
                         vocab_size=cfg.vocab_size, max_sequence_length=cfg.seq_len,
                         position_embedding_type="learned_absolute",
                         share_embeddings_and_output_weights=True).cuda().train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        tokens, labels = self.batch(cfg, micro)
        positions = torch.arange(cfg.seq_len, device=self.device).expand(micro, -1)

        def step():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(tokens, positions, None, labels=labels).float().mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss.detach()
        dt, loss = self.timed(step, 3, 8)
        self.report("megatron_core", preset, cfg, micro, dt, loss, compile=False, recompute="none",
                    spec="local")

    def equality(self) -> None:
        """fp32 losses of 4 AdamW steps on the CPU and on this device, from the same weights."""
        from hyperclova.train.engine import build_engine
        from hyperclova.train.optim import Optimizers

        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        overrides = ["model.n_layers=2", "model.d_model=256", "model.n_heads=4",
                     "model.vocab_size=4096", "model.seq_len=256", "train.dtype=fp32",
                     "train.micro_batch_size=4", "train.global_batch_size=4", "train.lr=1e-3",
                     "parallel.compile=false"]
        losses = {}
        state = None
        for dev in ("cpu", self.device.type):
            cfg = load_config(None, overrides + [f"train.device={dev}"])
            engine = build_engine(cfg, torch.device(dev))
            if state is None:
                state = {k: v.clone() for k, v in engine.model_parts[0].state_dict().items()}
            else:
                engine.model_parts[0].load_state_dict(state)
            opt = Optimizers(engine.model_parts, cfg, dev)
            g = torch.Generator().manual_seed(5)
            run = []
            for _ in range(4):
                seq = torch.randint(0, 4096, (4, 257), generator=g).to(dev)
                run.append(engine.forward_backward(seq[:, :-1], seq[:, 1:], 1).item())
                engine.clip_grad_norm(1.0)
                opt.step()
                opt.zero_grad()
            losses[dev] = run
        gpu = losses[self.device.type]
        rel = max(abs(a - b) / abs(b) for a, b in zip(gpu, losses["cpu"]))
        self.write(kind="equality", cpu=losses["cpu"], device=gpu, max_rel_diff=rel,
                   equal_within_1e4=rel <= 1e-4)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="bench_gpu.jsonl", help="JSON lines, appended as measured")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny model, a few seconds")
    p.add_argument("--budget-s", type=float, default=450.0,
                   help="skip the cases left after this many seconds (default 7.5 minutes)")
    p.add_argument("--presets", nargs="*", default=["350m", "1.3b"])
    p.add_argument("--port", type=int, default=29511, help="megatron-core's 1-rank process group")
    args = p.parse_args()
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py needs a CUDA GPU (or --smoke for the CPU smoke mode)")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    b = Bench(args)
    b.env()
    b.case("gemm", b.gemm)
    b.case("equality", b.equality)
    micro = {"350m": 8, "1.3b": 4}
    for preset in args.presets:
        mb = 2 if args.smoke else micro.get(preset, 4)
        for compile in ((False,) if args.smoke else (False, True)):
            for recompute in ("none", "selective"):
                b.case(f"hyperclova {preset}", lambda: b.ours(preset, mb, compile, recompute),
                       preset=preset, compile=compile, recompute=recompute)
            b.case(f"hf_gpt2 {preset}", lambda: b.hf(preset, mb, compile), preset=preset,
                   compile=compile)
        b.case(f"megatron_core {preset}", lambda: b.megatron(preset, mb), preset=preset)
    b.out.close()


if __name__ == "__main__":
    main()
