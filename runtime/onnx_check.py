"""Refuse ONNX files that keep tensor data outside themselves, before onnxruntime opens them.

An ONNX tensor may say "my bytes are in file X at offset O" (external data); onnxruntime then reads
X relative to the model's folder, and ONNX has had path-traversal advisories for exactly that
(CVE-2024-27318, CVE-2026-34446/34447). mmedge's exporter writes every weight inside the file (one
file = one hash), so any external reference in a bundle is foreign: refused, whatever it points at.

This walks the protobuf wire format itself (no `onnx` package in the runtime, no full parse: only
the messages that can hold tensors are descended into; raw weight bytes are skipped by length), on a
memory map: constant memory, a few milliseconds for a 350 MB encoder. A file whose structure is
broken along those paths is refused too.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mmedge.errors import OnnxFormatError

# message kind -> {field number: kind of the embedded message}, for the paths that reach tensors.
# (onnx.proto: ModelProto, GraphProto, NodeProto, AttributeProto, FunctionProto, TrainingInfoProto,
# SparseTensorProto; TensorProto is handled apart.)
_CHILDREN = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "function": {7: "node"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
}
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION, _EXTERNAL = 13, 14, 1
_MAX_DEPTH = 64  # nested subgraphs (If/Loop bodies); deeper is not a model mmedge wrote
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class _Broken(Exception):
    pass


def _varint(data, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Broken("a varint runs past its message")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data, start: int, end: int):
    """(field number, wire type, value or (start, end) of a length-delimited payload) of one message."""
    pos = start
    while pos < end:
        key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Broken("field number 0")
        if wire == _VARINT:
            value, pos = _varint(data, pos, end)
            yield number, wire, value
        elif wire == _FIXED64 or wire == _FIXED32:
            pos += 8 if wire == _FIXED64 else 4
            if pos > end:
                raise _Broken("a fixed-size field runs past its message")
        elif wire == _LENGTH:
            n, pos = _varint(data, pos, end)
            if n > end - pos:
                raise _Broken(f"a {n}-byte field runs past its message")
            yield number, wire, (pos, pos + n)
            pos += n
        else:
            raise _Broken(f"wire type {wire} (groups or garbage)")


def _tensor_is_external(data, start: int, end: int) -> bool:
    for number, wire, value in _fields(data, start, end):
        if number == _TENSOR_DATA_LOCATION and wire == _VARINT and value == _EXTERNAL:
            return True
        if number == _TENSOR_EXTERNAL_DATA and wire == _LENGTH:
            return True
    return False


def check_onnx_self_contained(path: str | Path) -> int:
    """Raise OnnxFormatError if the ONNX file at `path` references external data or is structurally
    broken on the way to its tensors; returns the number of tensors seen."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise OnnxFormatError(f"{path}: empty file, not an ONNX model; re-export the bundle")
    data = np.memmap(path, dtype=np.uint8, mode="r")
    try:
        return _walk(memoryview(data), size, path)
    finally:
        del data


def _walk(data, size: int, path: Path) -> int:
    tensors = 0
    stack = [("model", 0, size, 0)]
    try:
        while stack:
            kind, start, end, depth = stack.pop()
            if depth > _MAX_DEPTH:
                raise _Broken(f"messages nested deeper than {_MAX_DEPTH}")
            children = _CHILDREN[kind]
            for number, wire, value in _fields(data, start, end):
                child = children.get(number)
                if child is None:
                    continue
                if wire != _LENGTH:
                    raise _Broken(f"field {number} of a {kind} should be a message")
                if child == "tensor":
                    tensors += 1
                    if _tensor_is_external(data, *value):
                        raise OnnxFormatError(
                            f"{path.name}: a tensor keeps its data in another file (ONNX external data); mmedge "
                            "bundles hold self-contained ONNX files, so this one was not written by mmedge export: "
                            "re-export the bundle")
                else:
                    stack.append((child, *value, depth + 1))
    except _Broken as e:
        raise OnnxFormatError(f"{path.name}: not a valid ONNX file ({e}); the file is damaged: re-export the bundle") from None
    return tensors
