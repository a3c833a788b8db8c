"""The weight-bearing linear layers of an ONNX graph, in the form onnxruntime's int4 quantizer takes.

torch's exporter writes a linear layer over 2-D input as `Gemm` and over 3-D input as `MatMul`
(+ `Add`). onnxruntime's `MatMulNBits` quantizer takes `MatMul` only, so a Qwen2-VL encoder (all
2-D) came out of the int4 recipe with not one layer quantized, and verified as a perfect "int4".
`gemm_to_matmul` rewrites each Gemm with a constant weight as the MatMul (+ Add) it computes, exactly;
`weight_matmuls` lists the linear layers that hold a constant weight, so a recipe can require all of
them quantized.
"""
from __future__ import annotations


def _attr(node, name: str, default):
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def gemm_to_matmul(model) -> int:
    """Rewrite, in place, every `Gemm(A, B[, C])` with a constant B, alpha = beta = 1 and no transA,
    as `MatMul(A, B or Bᵀ)` followed by `Add(C)`; returns how many were rewritten."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    nodes, rewritten = [], 0
    for node in graph.node:
        constant_b = node.op_type == "Gemm" and len(node.input) >= 2 and node.input[1] in weights
        plain = _attr(node, "alpha", 1.0) == 1.0 and _attr(node, "beta", 1.0) == 1.0 and not _attr(node, "transA", 0)
        if not (constant_b and plain):
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weights[node.input[1]])
        w = w.T.copy() if _attr(node, "transB", 0) else w
        w_name = f"{node.input[1]}.as_matmul"
        graph.initializer.append(numpy_helper.from_array(w, w_name))
        has_bias = len(node.input) > 2 and node.input[2]
        product = f"{node.output[0]}.matmul" if has_bias else node.output[0]
        nodes.append(onnx.helper.make_node("MatMul", [node.input[0], w_name], [product], name=f"{node.name}.matmul"))
        if has_bias:
            nodes.append(onnx.helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}.bias"))
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return rewritten


def weight_matmuls(model) -> list[str]:
    """The names of the MatMul / Gemm nodes whose second input is a constant weight."""
    weights = {t.name for t in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1
            and n.input[1] in weights]
