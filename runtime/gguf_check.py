"""Structural validation of a GGUF file before llama.cpp reads a byte of it.

llama.cpp's GGUF loader has had integer overflows and out-of-bounds reads on malformed files
(e.g. GHSA-vgg9-87g3-85w8, CVE-2026-27940); a bundle can come from a stranger. So the runtime reads
the header itself, in Python (arbitrary-precision integers: no overflow), and refuses with a named
error anything llama.cpp should not be handed:

- magic `GGUF`, version 2 or 3 (a byte-swapped version names a big-endian file);
- tensor and key/value counts that the file's length can hold at all;
- keys: non-empty UTF-8 of at most 65,535 bytes, each once; value types known; booleans 0 or 1;
  strings and arrays no longer than what is left of the file; no arrays of arrays;
- `general.alignment`: a uint32 power of two;
- tensors: unique UTF-8 names, at most 4 dimensions, each at most 2^62, a known ggml type whose block divides
  the first dimension, offsets aligned, in order and packed as llama.cpp requires (each at the end
  of the one before, rounded up to the alignment), data inside the file;
- llama.cpp's vocabulary arrays (`tokenizer.ggml.tokens`, `.scores`, `.token_type`) of equal
  length, and the special token ids inside the vocabulary.

Only the header is read (a memory map); tensor data is never touched. `check_gguf` returns what it
parsed, so callers (the token-embedding reader) need not parse again.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmedge.errors import GgufFormatError

MAGIC = b"GGUF"
_U64 = struct.Struct("<Q")
VERSIONS = (2, 3)
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_KEY_BYTES = 65535
MAX_DIM = 1 << 62
DEFAULT_ALIGNMENT = 32

# GGUF value types: id -> (name, struct format of one item; None = variable size).
VALUE_TYPES = {0: ("uint8", "B"), 1: ("int8", "b"), 2: ("uint16", "H"), 3: ("int16", "h"), 4: ("uint32", "I"),
               5: ("int32", "i"), 6: ("float32", "f"), 7: ("bool", "B"), 8: ("string", None), 9: ("array", None),
               10: ("uint64", "Q"), 11: ("int64", "q"), 12: ("float64", "d")}
STRING, ARRAY, BOOL = 8, 9, 7
# The smallest encodings, for bounding counts by the file's length: a key/value pair is at least a
# length (8) + 1 key byte + a type (4) + a 1-byte value; a tensor info at least a length (8) + 1
# name byte + n_dims (4) + one dim (8) + type (4) + offset (8).
MIN_KV_BYTES, MIN_TENSOR_INFO_BYTES = 14, 33

# ggml tensor types: id -> (name, elements per block, bytes per block), as ggml.c's type traits of
# the llama.cpp llama-cpp-python 0.3.36 builds (tests compare it with llama_cpp's GGML_TYPE_* ids
# and the gguf package's GGML_QUANT_SIZES). Ids ggml removed are absent: llama.cpp refuses them too.
GGML_TYPES = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36), 10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17), 40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18), 42: ("Q2_0", 64, 18),
}
VOCAB_ARRAYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type")
SPECIAL_IDS = ("bos", "eos", "eot", "eom", "unknown", "separator", "padding", "mask", "cls")


@dataclass(frozen=True)
class ArrayInfo:
    """An array value, summarised: its item type and length (the items are not kept)."""

    item_type: str
    count: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dims: tuple[int, ...]  # ne0 first, as GGUF stores them
    type_id: int
    offset: int  # from the start of the data section
    nbytes: int

    @property
    def type_name(self) -> str:
        return GGML_TYPES[self.type_id][0]


@dataclass(frozen=True)
class GgufHeader:
    version: int
    alignment: int
    data_start: int  # absolute offset of the data section
    file_size: int
    metadata: dict = field(repr=False)  # key -> scalar, str, or ArrayInfo
    tensors: dict = field(repr=False)  # name -> TensorInfo, in file order


class _Cursor:
    def __init__(self, data, size: int, where: str):
        self.data, self.size, self.pos, self.where = data, size, 0, where

    def fail(self, what: str) -> GgufFormatError:
        return GgufFormatError(f"{self.where}: not a valid GGUF file: {what} (at byte {self.pos}); "
                               "the file is damaged or was not written by a GGUF writer: re-export the bundle")

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise self.fail(f"{what} needs {n} bytes but {self.size - self.pos} are left")

    def take(self, fmt: str, what: str):
        n = struct.calcsize("<" + fmt)
        self.need(n, what)
        value = struct.unpack_from("<" + fmt, self.data, self.pos)[0]
        self.pos += n
        return value

    def raw_string(self, what: str, limit: int | None = None) -> bytes:
        n = self.take("Q", f"the length of {what}")
        if limit is not None and n > limit:
            raise self.fail(f"{what} is {n} bytes long, more than the {limit} allowed")
        self.need(n, what)
        raw = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return raw

    def text(self, what: str, limit: int | None = None) -> str:
        raw = self.raw_string(what, limit)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8") from None

    def unique_name(self, what: str, seen, repeated: str) -> str:
        """A non-empty UTF-8 name not in `seen` (metadata keys, tensor names)."""
        name = self.text(f"a {what}", MAX_KEY_BYTES)
        if not name:
            raise self.fail(f"a {what} is empty")
        if name in seen:
            raise self.fail(f"{what} {name!r} {repeated}")
        return name

    def skip_strings(self, count: int, what: str) -> None:
        # A vocabulary holds up to ~260k strings: this loop is the header's hot spot, kept lean.
        unpack, data, pos, size = _U64.unpack_from, self.data, self.pos, self.size
        for _ in range(count):
            if pos + 8 > size:
                self.pos = pos
                raise self.fail(f"an item of {what} runs past the end of the file")
            pos += 8 + unpack(data, pos)[0]
            if pos > size:
                self.pos = pos
                raise self.fail(f"an item of {what} runs past the end of the file")
        self.pos = pos


def _value(c: _Cursor, vtype: int, key: str):
    if vtype not in VALUE_TYPES:
        raise c.fail(f"metadata {key!r} has value type {vtype}; known types are 0..12")
    name, fmt = VALUE_TYPES[vtype]
    if fmt is not None:
        value = c.take(fmt, f"the value of {key!r}")
        if vtype == BOOL:
            if value > 1:
                raise c.fail(f"metadata {key!r} is a bool holding {value}")
            return bool(value)
        return value
    if vtype == STRING:
        return c.raw_string(f"the string {key!r}").decode("utf-8", errors="replace")
    item_type, count = c.take("I", f"the item type of {key!r}"), c.take("Q", f"the length of {key!r}")
    if item_type == ARRAY:
        raise c.fail(f"metadata {key!r} is an array of arrays, which GGUF readers do not take")
    if item_type not in VALUE_TYPES:
        raise c.fail(f"metadata {key!r} is an array of value type {item_type}; known types are 0..12")
    item_name, item_fmt = VALUE_TYPES[item_type]
    if item_fmt is None:  # strings: each at least its 8-byte length
        c.need(count * 8, f"the {count} strings of {key!r}")
        c.skip_strings(count, repr(key))
    else:
        nbytes = count * struct.calcsize("<" + item_fmt)
        c.need(nbytes, f"the {count} items of {key!r}")
        c.pos += nbytes
    return ArrayInfo(item_name, count)


def _tensor(c: _Cursor, names: set) -> tuple[str, tuple[int, ...], int, int]:
    name = c.unique_name("tensor name", names, "is listed twice")
    n_dims = c.take("I", f"the dimension count of {name!r}")
    if n_dims > MAX_DIMS:
        raise c.fail(f"tensor {name!r} has {n_dims} dimensions; GGUF tensors have at most {MAX_DIMS}")
    dims = tuple(c.take("Q", f"a dimension of {name!r}") for _ in range(n_dims)) or (1,)
    if any(d > MAX_DIM for d in dims):
        raise c.fail(f"tensor {name!r} has dimensions {list(dims)}; each must be at most 2^62")
    type_id = c.take("I", f"the type of {name!r}")
    offset = c.take("Q", f"the offset of {name!r}")
    return name, dims, type_id, offset


def _pad(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


def read_gguf_header(path: str | Path) -> GgufHeader:
    """Parse and check the header of the GGUF file at `path`; raises GgufFormatError."""
    path = Path(path)
    where = str(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise GgufFormatError(f"{where}: cannot read the GGUF file ({e.strerror})") from None
    if size < 24:
        raise GgufFormatError(f"{where}: not a valid GGUF file: {size} bytes is shorter than a GGUF header (24)")
    data = np.memmap(path, dtype=np.uint8, mode="r")
    try:
        return parse_gguf_header(memoryview(data), where)
    finally:
        del data


def parse_gguf_header(data: bytes | memoryview, where: str = "GGUF data") -> GgufHeader:
    """The same check on bytes in memory (the whole file: sizes are checked against its length)."""
    if len(data) < 24:
        raise GgufFormatError(f"{where}: not a valid GGUF file: {len(data)} bytes is shorter than a GGUF header (24)")
    return _parse(_Cursor(data, len(data), where))


def _parse(c: _Cursor) -> GgufHeader:
    if bytes(c.data[:4]) != MAGIC:
        raise c.fail(f"the first bytes are {bytes(c.data[:4])!r}, not the GGUF magic {MAGIC!r}")
    c.pos = 4
    version = c.take("I", "the version")
    if version not in VERSIONS:
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        hint = " (a big-endian file: llama.cpp reads little-endian GGUF only)" if swapped in VERSIONS else ""
        raise c.fail(f"version {version}{hint}; readable versions are {list(VERSIONS)}")
    n_tensors, n_kv = c.take("Q", "the tensor count"), c.take("Q", "the metadata count")
    if n_kv * MIN_KV_BYTES > c.size or n_tensors * MIN_TENSOR_INFO_BYTES > c.size:
        raise c.fail(f"{n_tensors} tensors and {n_kv} metadata entries cannot fit in a {c.size}-byte file")

    metadata: dict = {}
    for _ in range(n_kv):
        key = c.unique_name("metadata key", metadata, "appears twice")
        vtype = c.take("I", f"the value type of {key!r}")
        metadata[key] = _value(c, vtype, key)
        if key == "general.alignment" and vtype != 4:
            raise c.fail(f"general.alignment has value type {VALUE_TYPES.get(vtype, ('?',))[0]}; it must be uint32")

    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if alignment < 1 or alignment & (alignment - 1):
        raise c.fail(f"general.alignment is {alignment}; it must be a power of two")

    infos = []
    names: set = set()
    for _ in range(n_tensors):
        info = _tensor(c, names)
        names.add(info[0])
        infos.append(info)
    data_start = _pad(c.pos, alignment)
    if data_start > c.size:
        raise c.fail(f"the data section would start at byte {data_start}, past the end of the file ({c.size})")

    tensors: dict = {}
    expected = 0
    for name, dims, type_id, offset in infos:
        if type_id not in GGML_TYPES:
            raise c.fail(f"tensor {name!r} has ggml type {type_id}, which no known ggml has")
        type_name, block, block_bytes = GGML_TYPES[type_id]
        if dims[0] % block:
            raise c.fail(f"tensor {name!r} ({type_name}) has rows of {dims[0]} elements, not whole blocks of {block}")
        n_elements = 1
        for d in dims:
            n_elements *= d
        nbytes = n_elements // block * block_bytes
        if offset != expected:
            raise c.fail(f"tensor {name!r} starts at data offset {offset}; GGUF packs tensors in order, so it must "
                         f"start at {expected}")
        if data_start + offset + nbytes > c.size:
            raise c.fail(f"tensor {name!r} ({nbytes} bytes at data offset {offset}) runs past the end of the file "
                         f"({c.size} bytes): the file is truncated")
        tensors[name] = TensorInfo(name, dims, type_id, offset, nbytes)
        expected = _pad(offset + nbytes, alignment)

    header = GgufHeader(version, alignment, data_start, c.size, metadata, tensors)
    _check_vocabulary(c, metadata)
    return header


def _check_vocabulary(c: _Cursor, metadata: dict) -> None:
    """llama.cpp indexes its vocabulary arrays by token id and special ids into them: keep them consistent."""
    tokens = metadata.get(VOCAB_ARRAYS[0])
    if tokens is None:
        return
    if not isinstance(tokens, ArrayInfo) or tokens.item_type != "string":
        raise c.fail(f"{VOCAB_ARRAYS[0]} must be an array of strings")
    if tokens.count == 0:
        raise c.fail(f"{VOCAB_ARRAYS[0]} is empty")
    for key in VOCAB_ARRAYS[1:]:
        other = metadata.get(key)
        if other is not None and (not isinstance(other, ArrayInfo) or other.count != tokens.count):
            count = other.count if isinstance(other, ArrayInfo) else "not an array"
            raise c.fail(f"{key} has {count} entries but the vocabulary has {tokens.count} tokens")
    for name in SPECIAL_IDS:
        key = f"tokenizer.ggml.{name}_token_id"
        value = metadata.get(key)
        if value is None:
            continue
        if isinstance(value, (bool, float, str, ArrayInfo)) or not 0 <= value < tokens.count:
            raise c.fail(f"{key} is {value!r}, outside the vocabulary of {tokens.count} tokens")
