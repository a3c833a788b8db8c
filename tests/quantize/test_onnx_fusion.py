"""The CPU graph fusions: fewer nodes, onnxruntime's contrib ops, the same numbers; a graph the
optimizer cannot take is kept unchanged with the reason recorded; the QDQ recipe is never fused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmedge.quantize.onnx_quant import CPU_FUSED, ONNX_RECIPES, apply_onnx_recipe


class _Block(torch.nn.Module):
    """A ViT MLP block as transformers writes it: tanh-GELU between two linears, residual + LayerNorm."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(width, 4 * width), torch.nn.Linear(4 * width, width)
        self.norm = torch.nn.LayerNorm(width)

    def forward(self, x):
        return self.norm(x + self.fc2(torch.nn.functional.gelu(self.fc1(x), approximate="tanh")))


@pytest.fixture(scope="module")
def block_onnx(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    from mmedge.export.targets.onnx import export_onnx

    torch.manual_seed(0)
    module = _Block().eval()
    x = torch.randn(2, 7, 32)
    path = tmp_path_factory.mktemp("fusion") / "block.onnx"
    export_onnx(module, {"x": x}, path, "y")
    with torch.no_grad():
        return path, x.numpy(), module(x).numpy()


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _ops(path: Path) -> list[str]:
    import onnx

    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_fp32_graph_is_fused_and_computes_the_same(block_onnx, tmp_path):
    src, x, ref = block_onnx
    out = tmp_path / "fused.onnx"
    details = apply_onnx_recipe("fp32", src, out)
    assert details["graph_fusions"]["FastGelu"] == 1
    assert details["graph_fusions"]["SkipLayerNormalization"] == 1
    before, after = _ops(src), _ops(out)
    assert {"Tanh", "Pow"} <= set(before) and not {"Tanh", "Pow"} & set(after)
    assert len(after) < len(before) and {"FastGelu", "SkipLayerNormalization"} <= set(after)
    assert np.abs(_run(out, x) - ref).max() < 1e-5
    assert np.abs(_run(out, x) - _run(src, x)).max() < 1e-5


def test_int8_is_quantized_after_fusing(block_onnx, tmp_path):
    src, x, ref = block_onnx
    out = tmp_path / "int8.onnx"
    details = apply_onnx_recipe("int8", src, out)
    assert details["graph_fusions"]["FastGelu"] == 1
    ops = set(_ops(out))
    assert "FastGelu" in ops and ops & {"MatMulInteger", "DynamicQuantizeLinear"}
    y = _run(out, x)
    cos = float((y * ref).sum() / np.linalg.norm(y) / np.linalg.norm(ref))
    assert 0.99 < cos and np.abs(y - ref).max() > 1e-5  # quantized, and still close


def test_a_graph_the_optimizer_refuses_is_kept_unchanged(block_onnx, tmp_path, monkeypatch):
    import onnxruntime.transformers.optimizer as optimizer

    def refuse(*args, **kwargs):
        raise ValueError("unexpected graph")

    monkeypatch.setattr(optimizer, "optimize_model", refuse)
    src, x, _ = block_onnx
    out = tmp_path / "plain.onnx"
    details = apply_onnx_recipe("fp32", src, out)
    assert details["graph_fusions"] == "none (ValueError: unexpected graph)"
    assert out.read_bytes() == src.read_bytes()
    assert not list(tmp_path.glob("tmp*")) and not list(src.parent.glob("tmp*"))  # no leftovers


def test_the_npu_recipe_keeps_standard_ops_only():
    assert "int8-static" in ONNX_RECIPES and "int8-static" not in CPU_FUSED
    assert set(CPU_FUSED) == set(ONNX_RECIPES) - {"int8-static"}
