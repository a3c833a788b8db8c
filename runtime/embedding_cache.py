"""An image-embedding cache keyed by content: the projector's output for one encoder call, found
again by the sha256 of that call's inputs.

A second question about the same picture (a chat, a server, a re-run) then skips the encoder and
the projector, which are most of the time to first token on a CPU (89% for SmolVLM-256M's shapes on
one core): what remains is preprocessing, hashing the inputs and the prefill. Keyed by the encoder
inputs (after preprocessing), not by the file, so a hit is exact by construction: the same arrays
went into the same compiled parts of this pipeline. Hashing costs ~1 ms per 512-px tile.

Least recently used entries go first once `max_bytes` is exceeded; an entry larger than the whole
budget is not kept. Values are copied in and out, so callers may modify what they get.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

MAX_CACHE_MIB = 1 << 20


@dataclass
class CacheCounters:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


class EmbeddingCache:
    def __init__(self, max_bytes: int):
        if max_bytes <= 0:
            raise ValueError(f"an embedding cache needs a positive size, got {max_bytes} bytes")
        self.max_bytes = max_bytes
        self.counters = CacheCounters()
        self._entries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0

    @staticmethod
    def key(inputs: dict[str, np.ndarray]) -> str:
        """The digest of named arrays: names, dtypes, shapes and bytes, in name order."""
        h = hashlib.sha256()
        for name in sorted(inputs):
            a = np.ascontiguousarray(inputs[name])
            h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
            h.update(memoryview(a).cast("B"))
        return h.hexdigest()

    def get(self, key: str) -> np.ndarray | None:
        value = self._entries.get(key)
        if value is None:
            self.counters.misses += 1
            return None
        self._entries.move_to_end(key)
        self.counters.hits += 1
        return value.copy()

    def put(self, key: str, value: np.ndarray) -> None:
        if value.nbytes > self.max_bytes or key in self._entries:
            return
        self._entries[key] = value.copy()
        self._bytes += value.nbytes
        while self._bytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self._bytes -= old.nbytes
            self.counters.evictions += 1

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)
