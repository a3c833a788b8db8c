"""A GGUF file built field by field, so tests can set any field to a hostile value.

`GgufSpec()` is a small valid file (two tensors, a three-token vocabulary); a test changes a field
of the spec (or of the written bytes) and expects the reader to refuse it. Written here from the
GGUF format description: little-endian; magic, version (u32), tensor count (u64), key/value count
(u64); key/values (string key, u32 type, value); tensor infos (string name, u32 n_dims, u64 dims,
u32 ggml type, u64 offset); padding to the alignment; tensor data.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
FORMATS = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "B", U64: "Q", I64: "q", F64: "d"}
GGML_F32, GGML_Q8_0 = 0, 8


def gguf_string(raw: bytes | str, length: int | None = None) -> bytes:
    raw = raw.encode() if isinstance(raw, str) else raw
    return struct.pack("<Q", len(raw) if length is None else length) + raw


def scalar(vtype: int, value) -> bytes:
    return struct.pack("<" + FORMATS[vtype], value)


def array(item_type: int, items: list, count: int | None = None) -> bytes:
    body = b"".join(gguf_string(i) if item_type == STRING else scalar(item_type, i) for i in items)
    return struct.pack("<IQ", item_type, len(items) if count is None else count) + body


@dataclass
class KV:
    key: bytes | str
    vtype: int
    payload: bytes  # the encoded value (for arrays: item type, count, items)
    key_length: int | None = None  # a lying key length

    def encode(self) -> bytes:
        return gguf_string(self.key, self.key_length) + struct.pack("<I", self.vtype) + self.payload


@dataclass
class Tensor:
    name: bytes | str
    dims: list[int]
    type_id: int
    nbytes: int  # the data written for it
    offset: int | None = None  # None: packed where GGUF expects it
    n_dims: int | None = None  # a lying dimension count

    def encode(self, offset: int) -> bytes:
        n_dims = len(self.dims) if self.n_dims is None else self.n_dims
        return (gguf_string(self.name) + struct.pack("<I", n_dims) + b"".join(struct.pack("<Q", d) for d in self.dims)
                + struct.pack("<IQ", self.type_id, offset))


def default_kvs() -> list[KV]:
    return [
        KV("general.architecture", STRING, gguf_string("llama")),
        KV("general.alignment", U32, scalar(U32, 32)),
        KV("tokenizer.ggml.tokens", ARRAY, array(STRING, ["<s>", "a", "b"])),
        KV("tokenizer.ggml.scores", ARRAY, array(F32, [0.0, -1.0, -2.0])),
        KV("tokenizer.ggml.token_type", ARRAY, array(I32, [3, 1, 1])),
        KV("tokenizer.ggml.bos_token_id", U32, scalar(U32, 0)),
    ]


def default_tensors() -> list[Tensor]:
    # 32 x 2 float32 = 256 bytes; one Q8_0 block of 32 = 34 bytes (padded to 64 in the file).
    return [Tensor("a.weight", [32, 2], GGML_F32, 256), Tensor("b.weight", [32], GGML_Q8_0, 34)]


@dataclass
class GgufSpec:
    magic: bytes = b"GGUF"
    version: int = 3
    kvs: list[KV] = field(default_factory=default_kvs)
    tensors: list[Tensor] = field(default_factory=default_tensors)
    alignment: int = 32  # how this writer pads (the file's own general.alignment is a KV above)
    n_tensors: int | None = None  # lying counts
    n_kv: int | None = None

    def build(self) -> bytes:
        head = self.magic + struct.pack("<IQQ", self.version, len(self.tensors) if self.n_tensors is None else self.n_tensors,
                                        len(self.kvs) if self.n_kv is None else self.n_kv)
        head += b"".join(kv.encode() for kv in self.kvs)
        offsets, data_size = [], 0
        for t in self.tensors:
            offsets.append(data_size if t.offset is None else t.offset)
            data_size = _pad(data_size + t.nbytes, self.alignment)
        head += b"".join(t.encode(o) for t, o in zip(self.tensors, offsets))
        head += b"\0" * (_pad(len(head), self.alignment) - len(head))
        data = bytearray(data_size)
        pos = 0
        for t in self.tensors:
            data[pos:pos + t.nbytes] = bytes((i * 7 + 3) % 251 for i in range(t.nbytes))
            pos = _pad(pos + t.nbytes, self.alignment)
        return head + bytes(data)


def _pad(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment
