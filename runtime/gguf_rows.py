"""Rows of a GGUF tensor (the token embedding matrix), read with numpy from the memory-mapped file.

Why: a PaliGemma prompt must be decoded as ONE bidirectional batch, and a llama_batch holds either
token ids or embeddings, not both; so the prompt's text tokens enter as embedding rows too. They
must be exactly what llama.cpp's own lookup (`get_rows` on token_embd) gives, so only the types
whose dequantization is exact and simple are read: F32, F16 (widened) and Q8_0 (int8 x its block's
F16 scale, in float32, as ggml does). Anything else is refused; the exporter keeps token_embd in one
of these types.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mmedge.errors import BackendError

from .gguf_check import GgufHeader, read_gguf_header

# ggml types read here: id -> (name, elements per block, bytes per block).
_TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 8: ("Q8_0", 32, 34)}
READABLE_TYPES = tuple(name for name, _, _ in _TYPES.values())


class GgufTensorRows:
    """One tensor of a GGUF file, rows dequantized on demand (ne0 = row length)."""

    def __init__(self, path: str | Path, name: str, header: GgufHeader | None = None):
        """`header`: the file's checked header when the caller has it (LlamaModel parsed it already)."""
        self.path = Path(path)
        header = header or read_gguf_header(self.path)  # checked: the tensor lies inside the file
        info = header.tensors.get(name)
        if info is None:
            raise BackendError(f"{self.path}: the GGUF holds no tensor {name!r}")
        if info.type_id not in _TYPES:
            raise BackendError(
                f"{self.path}: {name} is stored as ggml type {info.type_name}; the runtime reads its rows exactly only "
                f"from {list(READABLE_TYPES)} (re-export the bundle: the exporter keeps it so)"
            )
        self.type_name, block, block_bytes = _TYPES[info.type_id]
        self.row_length, self.n_rows = info.dims[0], int(np.prod(info.dims[1:]))
        self.row_bytes = self.row_length // block * block_bytes
        self.start = header.data_start + info.offset
        self.array = np.memmap(self.path, dtype=np.uint8, mode="r")

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
