"""The pieces that keep conversion memory bounded: a streaming safetensors writer that the
safetensors library reads back, layer-at-a-time reading, and lazily produced, size-bounded DCP files."""
from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from hyperclova.convert import to_hf
from hyperclova.convert.dcp import CheckpointReader, resolve_step_dir, save_lazy
from hyperclova.convert.hf import qkv_from_hf, qkv_to_hf, tensor_groups
from hyperclova.convert.safetensors_io import StreamingSafetensorsWriter


def test_streaming_safetensors_is_read_by_the_library(tmp_path):
    tensors = {"a": torch.randn(3, 5), "b": torch.randn(7).to(torch.bfloat16),
               "c": torch.arange(6, dtype=torch.int64).reshape(2, 3), "d": torch.randn(4, 2).half(),
               "e": torch.tensor(1.5)}
    specs = [(k, tuple(v.shape), v.dtype) for k, v in tensors.items()]
    with StreamingSafetensorsWriter(tmp_path / "x.safetensors", specs, metadata={"format": "pt", "k": "v"}) as w:
        for k, v in tensors.items():
            w.write(k, v)
    with safe_open(str(tmp_path / "x.safetensors"), framework="pt") as f:
        assert f.metadata() == {"format": "pt", "k": "v"}
        for k, v in tensors.items():
            got = f.get_tensor(k)
            assert got.dtype == v.dtype and torch.equal(got, v), k


def test_streaming_writer_refuses_wrong_order_and_cleans_up(tmp_path):
    specs = [("a", (2,), torch.float32), ("b", (2,), torch.float32)]
    path = tmp_path / "x.safetensors"
    with pytest.raises(RuntimeError, match="got 'b', expected a"):
        with StreamingSafetensorsWriter(path, specs) as w:
            w.write("b", torch.zeros(2))
    with pytest.raises(RuntimeError, match=r"'a' is \(3,\)"):
        with StreamingSafetensorsWriter(path, specs) as w:
            w.write("a", torch.zeros(3))
    assert not path.exists() and not list(tmp_path.iterdir())  # no partial file left behind


def test_qkv_permutation_is_exact_and_groups_heads():
    n_heads, d_head, d = 4, 8, 32
    w = torch.randn(3 * d, d)
    hf = qkv_to_hf(w, n_heads)
    assert hf.shape == (d, 3 * d) and torch.equal(qkv_from_hf(hf, n_heads), w)
    # ours: rows [h q, h k, h v] per head; HF: columns [all q | all k | all v]
    for h in range(n_heads):
        for j, name in enumerate("qkv"):
            ours = w[h * 3 * d_head + j * d_head:][:d_head]
            theirs = hf[:, j * d + h * d_head:][:, :d_head].t()
            assert torch.equal(ours, theirs), (h, name)
    b = torch.randn(3 * d)
    assert torch.equal(qkv_from_hf(qkv_to_hf(b, n_heads), n_heads), b)


def test_reading_is_one_layer_at_a_time(tmp_path, tiny_ckpt, monkeypatch):
    cfg, _, ckpt = tiny_ckpt
    calls: list[list[str]] = []
    original = CheckpointReader.load

    def spy(self, keys):
        calls.append(list(keys))
        return original(self, keys)

    monkeypatch.setattr(CheckpointReader, "load", spy)
    to_hf(ckpt, tmp_path / "hf")
    groups = [{"model." + m.ours for m in g} for g in tensor_groups(cfg.model)]
    assert len(calls) == len(groups)
    for keys in calls:
        assert any(set(keys) <= g for g in groups), keys


def test_lazy_save_produces_on_demand_into_bounded_files(tmp_path):
    real = {f"t{i}": torch.full((256, 256), float(i)) for i in range(6)}  # 256 KiB each
    produced: list[str] = []

    def producer(key):
        def make():
            produced.append(key)
            return real[key.split(".", 1)[1]].clone()
        return make

    state = {"model": {k: torch.empty(v.shape, device="meta") for k, v in real.items()},
             "train": {"step": 4}}
    producers = {f"model.{k}": producer(f"model.{k}") for k in real}
    save_lazy(tmp_path, state, producers, file_bytes=600 * 1024)
    assert sorted(produced) == sorted(producers)  # each tensor produced exactly once
    assert len(list(tmp_path.glob("*.distcp"))) == 3  # two 256 KiB tensors per 600 KiB file
    reader = CheckpointReader(tmp_path)
    loaded = reader.load(reader.keys)
    assert loaded["train.step"] == 4
    for k, v in real.items():
        assert torch.equal(loaded[f"model.{k}"], v)


def test_resolve_step_dir_follows_latest(tiny_ckpt):
    _, _, ckpt = tiny_ckpt
    step = resolve_step_dir(ckpt)
    assert step.parent == ckpt and step.name == (ckpt / "latest").read_text().strip()
    assert resolve_step_dir(step) == step
