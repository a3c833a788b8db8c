"""ONNX parts must be self-contained: any tensor with external data (in the graph, a Constant
node, a subgraph, a sparse initializer) is refused before onnxruntime opens the file, whatever the
location says; broken files are refused by name; mmedge's own parts pass and every tensor is seen."""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from mmedge.bundle import sha256_file
from mmedge.errors import OnnxFormatError
from mmedge.runtime.onnx_check import _walk, check_onnx_self_contained


def _all_tensors(model: onnx.ModelProto) -> int:
    from onnx.external_data_helper import _get_all_tensors

    return sum(1 for _ in _get_all_tensors(model))


@pytest.fixture(scope="module")
def projector(fp32_bundle):
    manifest = json.loads((fp32_bundle / "manifest.json").read_text())
    return fp32_bundle / manifest["parts"]["projector"]["file"]


def test_mmedges_parts_pass_and_every_tensor_is_seen(fp32_bundle):
    for path in fp32_bundle.glob("*.onnx"):
        assert check_onnx_self_contained(path) == _all_tensors(onnx.load(str(path))) > 0


def _as_external(model: onnx.ModelProto, location: str) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for t in model.graph.initializer:
        t.data_location = TensorProto.EXTERNAL
        del t.external_data[:]
        for key, value in (("location", location), ("offset", "0"), ("length", str(len(t.raw_data)))):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
        t.ClearField("raw_data")
    return model


@pytest.mark.parametrize("location", ["weights.bin", "../../../../etc/passwd", "/etc/shadow", "notes.txt", ""])
def test_external_initializers_are_refused_wherever_they_point(projector, tmp_path, location):
    path = tmp_path / "p.onnx"
    onnx.save(_as_external(onnx.load(str(projector)), location), str(path))
    with pytest.raises(OnnxFormatError, match="external data"):
        check_onnx_self_contained(path)


def test_the_onnx_packages_own_external_writer_is_refused(projector, tmp_path):
    path = tmp_path / "p.onnx"
    onnx.save(onnx.load(str(projector)), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="p.data", size_threshold=0)
    assert (tmp_path / "p.data").stat().st_size > 0
    with pytest.raises(OnnxFormatError, match="external data"):
        check_onnx_self_contained(path)


def _external_tensor(name: str) -> TensorProto:
    t = numpy_helper.from_array(np.ones(4, np.float32), name)
    t.data_location = TensorProto.EXTERNAL
    entry = t.external_data.add()
    entry.key, entry.value = "location", "../x"
    t.ClearField("raw_data")
    return t


def _model(nodes, initializers=(), sparse=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
                              initializer=list(initializers), sparse_initializer=list(sparse))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _const(out: str, tensor: TensorProto):
    return helper.make_node("Constant", [], [out], value=tensor)


HIDING_PLACES = {
    "constant-node": lambda: _model([_const("y", _external_tensor("k"))]),
    "if-subgraph": lambda: _model([helper.make_node(
        "If", ["c"], ["y"],
        then_branch=helper.make_graph([_const("t", _external_tensor("k"))], "then", [],
                                      [helper.make_tensor_value_info("t", TensorProto.FLOAT, [4])]),
        else_branch=helper.make_graph([_const("e", numpy_helper.from_array(np.zeros(4, np.float32)))], "else", [],
                                      [helper.make_tensor_value_info("e", TensorProto.FLOAT, [4])]))]),
    "sparse-initializer": lambda: _model([_const("y", numpy_helper.from_array(np.zeros(4, np.float32)))], sparse=[
        helper.make_sparse_tensor(_external_tensor("v"), numpy_helper.from_array(np.array([0, 1, 2, 3], np.int64), "i"),
                                  [4])]),
    "location-flag-only": lambda: _model([_const("y", _flag_only())]),
}


def _flag_only() -> TensorProto:
    t = numpy_helper.from_array(np.ones(4, np.float32), "f")
    t.data_location = TensorProto.EXTERNAL
    return t


@pytest.mark.parametrize("place", list(HIDING_PLACES))
def test_external_tensors_are_found_wherever_they_hide(tmp_path, place):
    path = tmp_path / "m.onnx"
    path.write_bytes(HIDING_PLACES[place]().SerializeToString())
    with pytest.raises(OnnxFormatError, match="external data"):
        check_onnx_self_contained(path)


def test_broken_files_are_refused_by_name(projector, tmp_path):
    data = projector.read_bytes()
    cases = {"empty": b"", "garbage": b"\xff" * 64, "group-wire-type": b"\x0b\x0c", "field-0": b"\x00\x01",
             "length-past-end": b"\x3a\xff\xff\xff\x0f", "varint-too-long": b"\x08" + b"\xff" * 11,
             "truncated-graph": data[: len(data) // 2]}
    for name, raw in cases.items():
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(raw)
        with pytest.raises(OnnxFormatError, match="not a valid ONNX file|empty file"):
            check_onnx_self_contained(path)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=300))
def test_any_bytes_give_a_count_or_a_named_error(data):
    from pathlib import Path

    try:
        assert _walk(memoryview(data), len(data), Path("x.onnx")) >= 0
    except OnnxFormatError:
        pass


def test_a_bundle_hiding_external_data_behind_a_harmless_name_is_refused(fp32_bundle, tmp_path, photos):
    """The unlisted-file check lets `notes.txt` through; the ONNX check still refuses the part that reads it."""
    from mmedge.runtime.pipeline import Pipeline

    bundle = tmp_path / "b"
    shutil.copytree(fp32_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    part = manifest["parts"]["projector"]
    path = bundle / part["file"]
    model = onnx.load(str(path))
    (bundle / "notes.txt").write_bytes(b"".join(t.raw_data for t in model.graph.initializer))
    onnx.save(_as_external(model, "notes.txt"), str(path))
    part["sha256"], part["size_bytes"] = sha256_file(path), path.stat().st_size
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(OnnxFormatError, match="projector.fp32.onnx: a tensor keeps its data in another file"):
        Pipeline(bundle)
