"""quantize/onnx_linear.py: Gemm layers rewritten as the MatMul (+ Add) they compute, so int4 takes
them; and no quantized recipe leaves a weight matmul in float."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from mmedge.errors import RecipeError
from mmedge.quantize.onnx_linear import gemm_to_matmul, weight_matmuls
from mmedge.quantize.onnx_quant import ONNX_RECIPES


def _two_gemms(path) -> None:
    """x [N, 48] -> Gemm(transB, bias) -> [N, 64] -> Gemm(no bias) -> [N, 32], weights constant."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array((rng.standard_normal((64, 48)) / 7).astype(np.float32), "w1")  # transB: [out, in]
    b1 = numpy_helper.from_array(rng.standard_normal(64).astype(np.float32), "b1")
    w2 = numpy_helper.from_array((rng.standard_normal((64, 32)) / 8).astype(np.float32), "w2")
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2"], ["y"], name="fc2")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 48])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 32])], [w1, b1, w2])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_the_rewrite_computes_the_same(tmp_path):
    src, out = tmp_path / "gemm.onnx", tmp_path / "matmul.onnx"
    _two_gemms(src)
    model = onnx.load(str(src))
    assert gemm_to_matmul(model) == 2 and sorted(weight_matmuls(model)) == ["fc1.matmul", "fc2.matmul"]
    assert {n.op_type for n in model.graph.node} == {"MatMul", "Add", "Relu"}
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(out))
    x = np.random.default_rng(1).standard_normal((5, 48)).astype(np.float32)
    np.testing.assert_allclose(_run(out, x), _run(src, x), rtol=1e-6, atol=1e-6)


def test_int4_quantizes_gemm_layers(tmp_path):
    src, dst = tmp_path / "gemm.onnx", tmp_path / "int4.onnx"
    _two_gemms(src)
    details = ONNX_RECIPES["int4"](src, dst)
    assert details["matmuls_quantized"] == 2 and details["gemms_as_matmul"] == 2
    assert weight_matmuls(onnx.load(str(dst))) == []
    x = np.random.default_rng(1).standard_normal((5, 48)).astype(np.float32)
    a, b = _run(dst, x).ravel(), _run(src, x).ravel()
    assert 0.98 < a @ b / np.linalg.norm(a) / np.linalg.norm(b) < 1.0  # quantized for real, and close


def test_a_weight_left_in_float_is_refused(tmp_path, monkeypatch):
    """The check behind every ONNX recipe: a quantizer that skips a layer (here: told to skip all)
    does not produce a part that verifies as a perfect int8."""
    from onnxruntime import quantization

    src = tmp_path / "gemm.onnx"
    _two_gemms(src)
    real = quantization.quantize_dynamic
    monkeypatch.setattr(quantization, "quantize_dynamic",
                        lambda *a, **k: real(*a, **{**k, "nodes_to_exclude": ["fc1_MatMul", "fc2_MatMul"]}))
    # (onnxruntime's pre-processing has made each Gemm a MatMul + Add by then, named after it)
    with pytest.raises(RecipeError, match=r"int8: onnxruntime left 2 weight matmuls in float \(fc1_MatMul, fc2_MatMul\)"):
        ONNX_RECIPES["int8"](src, tmp_path / "int8.onnx")


def test_the_qwen2vl_encoder_is_int4_for_real(bundles):
    """Its linear layers are all Gemm (2-D patches): before the rewrite int4 quantized none of them
    and the part verified at cosine 1.0."""
    _, m = bundles("qwen2vl-tiny", "int4", "int4", "F32", allow_below_floor=True)
    for role in ("vision_encoder", "projector"):
        details = m.parts[role].details
        assert details["matmuls_quantized"] == details["gemms_as_matmul"] > 0
        assert m.verification[role]["cosine"] < 0.99999
