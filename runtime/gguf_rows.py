"""Rows of a GGUF tensor (the token embedding matrix), read with numpy from the memory-mapped file.

Why: a PaliGemma prompt must be decoded as ONE bidirectional batch, and a llama_batch holds either
token ids or embeddings, not both; so the prompt's text tokens enter as embedding rows too. They
must be exactly what llama.cpp's own lookup (`get_rows` on token_embd) gives, so only the types
whose dequantization is exact and simple are read: F32, F16 (widened) and Q8_0 (int8 x its block's
F16 scale, in float32, as ggml does). Anything else is refused; the exporter keeps token_embd in one
of these types.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmedge.errors import BackendError

GGUF_MAGIC = b"GGUF"
# GGUF metadata value types -> struct format (fixed-size ones).
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
# ggml types read here: id -> (name, elements per block, bytes per block).
_TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 8: ("Q8_0", 32, 34)}
READABLE_TYPES = tuple(name for name, _, _ in _TYPES.values())


@dataclass(frozen=True)
class _TensorInfo:
    dims: tuple[int, ...]
    type_id: int
    offset: int


class _Reader:
    def __init__(self, data: memoryview):
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        value = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return value[0] if len(value) == 1 else value

    def string(self) -> str:
        n = self.take("Q")
        raw = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def value(self, vtype: int):
        if vtype in _SCALARS:
            return self.take(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item_type, n = self.take("I"), self.take("Q")
            if item_type in _SCALARS:  # skip without building a list (token scores, types)
                self.pos += n * struct.calcsize(_SCALARS[item_type])
                return None
            return [self.value(item_type) for _ in range(n)]
        raise BackendError(f"GGUF metadata value type {vtype} is unknown")


class GgufTensorRows:
    """One tensor of a GGUF file, rows dequantized on demand (ne0 = row length)."""

    def __init__(self, path: str | Path, name: str):
        self.path = Path(path)
        self.array = np.memmap(self.path, dtype=np.uint8, mode="r")
        try:
            info, data_start = self._find(memoryview(self.array), name)
        except (struct.error, UnicodeDecodeError, IndexError) as e:
            raise BackendError(f"{self.path}: not a readable GGUF file ({e})") from None
        if info.type_id not in _TYPES:
            raise BackendError(
                f"{self.path}: {name} is stored as ggml type {info.type_id}; the runtime reads its rows exactly only from "
                f"{list(READABLE_TYPES)} (re-export the bundle: the exporter keeps it so)"
            )
        self.type_name, block, block_bytes = _TYPES[info.type_id]
        self.row_length, self.n_rows = info.dims[0], int(np.prod(info.dims[1:]))
        if self.row_length % block:
            raise BackendError(f"{self.path}: {name} rows of {self.row_length} are not whole {self.type_name} blocks")
        self.row_bytes = self.row_length // block * block_bytes
        self.start = data_start + info.offset
        if self.start + self.n_rows * self.row_bytes > len(self.array):
            raise BackendError(f"{self.path}: {name} runs past the end of the file; the file is truncated")

    @staticmethod
    def _find(data: memoryview, name: str) -> tuple[_TensorInfo, int]:
        r = _Reader(data)
        if bytes(data[:4]) != GGUF_MAGIC:
            raise BackendError("not a GGUF file (bad magic)")
        r.pos = 4
        version, n_tensors, n_kv = r.take("I"), r.take("Q"), r.take("Q")
        if version < 2:
            raise BackendError(f"GGUF version {version} is too old")
        alignment = 32
        for _ in range(n_kv):
            key = r.string()
            value = r.value(r.take("I"))
            if key == "general.alignment":
                alignment = int(value)
        found = None
        for _ in range(n_tensors):
            tname = r.string()
            n_dims = r.take("I")
            dims = tuple(r.take("Q") for _ in range(n_dims))
            type_id, offset = r.take("I"), r.take("Q")
            if tname == name:
                found = _TensorInfo(dims, type_id, offset)
        if found is None:
            raise BackendError(f"the GGUF holds no tensor {name!r}")
        return found, (r.pos + alignment - 1) // alignment * alignment

    def rows(self, ids: list[int]) -> np.ndarray:
        """float32 [len(ids), row_length], exactly llama.cpp's get_rows."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.n_rows):
            raise BackendError(f"token id outside the embedding matrix (0..{self.n_rows - 1})")
        raw = np.stack([self.array[self.start + i * self.row_bytes:self.start + (i + 1) * self.row_bytes] for i in ids]) \
            if ids.size else np.zeros((0, self.row_bytes), np.uint8)
        if self.type_name == "F32":
            return raw.view(np.float32).copy()
        if self.type_name == "F16":
            return raw.view(np.float16).astype(np.float32)
        blocks = raw.reshape(len(ids), -1, 34)
        scale = blocks[:, :, :2].copy().view(np.float16).astype(np.float32)  # [n, blocks, 1]
        quants = blocks[:, :, 2:].view(np.int8).astype(np.float32)
        return (quants * scale).reshape(len(ids), self.row_length)
