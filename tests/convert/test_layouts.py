"""Checkpoints written by a real 2-process layout (gloo) convert like single-process ones, and
`reshard` gives a layout-free copy that loads into a different layout.

The worker shards every tensor the way the parallel layouts do (FSDP2: Shard(0); tensor-parallel
row-wise Linear: Shard(1); replicated LayerNorms), saves through the trainer's CheckpointManager,
then loads the `reshard` output into the opposite sharding and checks every local shard.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from convert_helpers import TINY, make_config, random_model
from safetensors.torch import load_file

from hyperclova.convert import reshard, to_hf
from hyperclova.convert.dcp import CheckpointReader, resolve_step_dir
from hyperclova.convert.hf import all_maps

WORLD = 2


def _placement(name: str, tensor: torch.Tensor, flip: bool):
    from torch.distributed.tensor import Replicate, Shard

    if "ln" in name:
        return Replicate()
    if tensor.dim() == 2 and (("proj" in name or "fc2" in name) != flip):
        return Shard(1)  # row-wise tensor parallel
    return Shard(0)  # FSDP2 / column-wise tensor parallel


def _sharded(sd: dict, mesh, flip: bool) -> dict:
    from torch.distributed.tensor import distribute_tensor

    return {k: distribute_tensor(v, mesh, [_placement(k, v, flip)]) for k, v in sd.items()}


def _worker(rank: int, root: str) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh

    from hyperclova.train.checkpoint import CheckpointManager, TrainState

    dist.init_process_group("gloo", init_method=f"file://{root}/store", rank=rank, world_size=WORLD)
    try:
        mesh = init_device_mesh("cpu", (WORLD,))
        cfg = make_config(TINY, Path(root) / "ckpt")
        full = {k: v for k, v in random_model(cfg).state_dict().items() if k != "lm_head.weight"}
        state = TrainState()
        state.step, state.consumed_samples = 9, 72
        CheckpointManager(cfg, {"model": _sharded(full, mesh, flip=False), "train": state},
                          log=lambda s: None).save(9)
        if rank == 0:
            torch.save(full, f"{root}/reference.pt")
            reshard(f"{root}/ckpt", f"{root}/resharded", ["parallel.dp_shard=2"])
        dist.barrier()
        # Load the resharded copy into the other sharding: DCP reshards at load time.
        target = {"model": _sharded({k: torch.zeros_like(v) for k, v in full.items()}, mesh, flip=True),
                  "train": {"step": 0, "consumed_samples": 0, "skipped_steps": 0}}
        step_dir = resolve_step_dir(f"{root}/resharded")
        dcp.load(target, checkpoint_id=str(step_dir))
        for k, v in target["model"].items():
            want = _sharded({k: full[k]}, mesh, flip=True)[k]
            assert torch.equal(v.to_local(), want.to_local()), k
        assert target["train"]["step"] == 9 and target["train"]["consumed_samples"] == 72
    finally:
        dist.destroy_process_group()


def test_sharded_checkpoint_converts_and_reshards(tmp_path):
    # fork: the children reuse this process's imports instead of paying for torch again.
    mp.start_processes(_worker, args=(str(tmp_path),), nprocs=WORLD, start_method="fork")
    full = torch.load(tmp_path / "reference.pt")
    cfg = make_config(TINY)

    # The 2-rank checkpoint really is sharded: each rank wrote its own file.
    step_dir = resolve_step_dir(tmp_path / "ckpt")
    assert len(list(step_dir.glob("*.distcp"))) == WORLD
    to_hf(tmp_path / "ckpt", tmp_path / "hf")
    sd = load_file(tmp_path / "hf" / "model.safetensors")
    for m in all_maps(cfg.model):
        assert torch.equal(sd[m.hf], m.to_hf(full[m.ours], cfg.model.n_heads)), m.hf

    # The resharded copy holds everything (model and loop state), at the same step, new layout.
    resharded = resolve_step_dir(tmp_path / "resharded")
    assert resharded.name == step_dir.name
    assert set(CheckpointReader(resharded).keys) == set(CheckpointReader(step_dir).keys)
    assert "dp_shard: 2" in (resharded / "config.yaml").read_text()
    to_hf(tmp_path / "resharded", tmp_path / "hf2")
    assert (tmp_path / "hf" / "model.safetensors").read_bytes() == \
        (tmp_path / "hf2" / "model.safetensors").read_bytes()


def test_reshard_keeps_the_whole_training_state(tmp_path, tiny_ckpt):
    """Optimizer moments, RNG and loop position survive `reshard` bit for bit."""
    _, _, ckpt = tiny_ckpt
    reshard(ckpt, tmp_path / "out", ["parallel.tp=2", "parallel.pp=2"])
    src, dst = CheckpointReader(resolve_step_dir(ckpt)), CheckpointReader(resolve_step_dir(tmp_path / "out"))
    assert set(src.keys) == set(dst.keys)
    assert any(k.startswith("optim.") for k in src.keys) and any(k.startswith("rng.") for k in src.keys)
    a, b = src.load(src.keys), dst.load(dst.keys)
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k
    assert src.nesting() == dst.nesting()
