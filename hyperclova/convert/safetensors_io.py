"""Write one safetensors file tensor by tensor.

`safetensors.torch.save_file` needs every tensor in memory at once; for an 80B model that is the
whole model. The format is simple (8-byte little-endian header length, a JSON header of names,
dtypes, shapes and byte offsets, then the raw little-endian bytes), and every shape and dtype is
known before any tensor is read, so we write the header first and then stream the data. Files are
read back with the `safetensors` library itself (tests check that it accepts them).
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch

_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
           torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
           torch.uint8: "U8", torch.bool: "BOOL"}


class StreamingSafetensorsWriter:
    """Declare every tensor's (name, shape, dtype) up front, then `write` them in that order.

        with StreamingSafetensorsWriter(path, specs, metadata={"format": "pt"}) as w:
            for name, tensor in produce():
                w.write(name, tensor)

    The file is written to `path.tmp` and renamed on a clean close, so a crash never leaves a
    truncated file under the real name.
    """

    def __init__(self, path: str | Path, specs: list[tuple[str, tuple[int, ...], torch.dtype]],
                 metadata: dict[str, str] | None = None):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.order = [name for name, _, _ in specs]
        self.specs = {name: (tuple(shape), dtype) for name, shape, dtype in specs}
        self.next = 0
        header: dict = {"__metadata__": dict(metadata)} if metadata else {}
        offset = 0
        for name, shape, dtype in specs:
            nbytes = _numel(shape) * torch.empty((), dtype=dtype).element_size()
            header[name] = {"dtype": _DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
        raw += b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned
        self.file = open(self.tmp, "wb")
        self.file.write(struct.pack("<Q", len(raw)))
        self.file.write(raw)

    def write(self, name: str, tensor: torch.Tensor) -> None:
        if self.next >= len(self.order) or name != self.order[self.next]:
            want = self.order[self.next] if self.next < len(self.order) else "nothing more"
            raise RuntimeError(f"safetensors writer: got '{name}', expected {want}")
        shape, dtype = self.specs[name]
        if tuple(tensor.shape) != shape or tensor.dtype != dtype:
            raise RuntimeError(f"safetensors writer: '{name}' is {tuple(tensor.shape)} {tensor.dtype}, "
                               f"declared {shape} {dtype}")
        data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        self.file.write(data.numpy().data)
        self.next += 1

    def close(self) -> None:
        self.file.close()
        if self.next != len(self.order):
            missing = self.order[self.next]
            raise RuntimeError(f"safetensors writer: closed before '{missing}' was written")
        os.replace(self.tmp, self.path)

    def __enter__(self) -> "StreamingSafetensorsWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.file.close()
            self.tmp.unlink(missing_ok=True)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
