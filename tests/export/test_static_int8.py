"""ONNX static int8 (QDQ) with calibration: the form NPU execution providers take."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from mmedge.errors import CalibrationError, RecipeError
from mmedge.quantize.recipes import TENSOR_RECIPES

from ..conftest import KQUANT_PRESET


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory, photos):
    folder = tmp_path_factory.mktemp("calib")
    for name, img in photos.items():
        img.convert("RGB").save(folder / f"{name}.jpg", quality=92)
    return folder


@pytest.fixture(scope="module")
def static_bundle(tmp_path_factory, checkpoints, photo_folder):
    from mmedge.export.exporter import ExportConfig, export_bundle

    out = tmp_path_factory.mktemp("static") / "bundle"
    m = export_bundle(ExportConfig(checkpoint=checkpoints(KQUANT_PRESET), output=out, encoder="int8-static",
                                   projector="int8-static", calibration_images=photo_folder))
    return out, m


def _activation_scales(path) -> dict[str, float]:
    """Scales of the QuantizeLinear nodes on activations (weights are stored pre-quantized)."""
    model = onnx.load(str(path))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    return {n.input[0]: float(inits[n.input[1]]) for n in model.graph.node
            if n.op_type == "QuantizeLinear" and n.input[1] in inits and inits[n.input[1]].size == 1}


def test_static_bundle_within_floor_and_really_qdq(static_bundle, photo_folder):
    path, m = static_bundle
    v = m.verification
    for role in ("vision_encoder", "projector"):
        assert v[role]["precision"] == "int8-static"
        assert TENSOR_RECIPES["int8-static"].min_cosine <= v[role]["cosine"] < 0.99999  # quantized, and close
        details = m.parts[role].details
        assert details["calibration"] == {"images": 6, "from": str(photo_folder)}
        ops = [n.op_type for n in onnx.load(str(path / m.parts[role].file)).graph.node]
        assert ops.count("QuantizeLinear") >= 2 and ops.count("DequantizeLinear") >= 4
        assert "DynamicQuantizeLinear" not in ops  # static, not dynamic


def test_calibration_changes_the_scales(static_bundle, bundles):
    """The same fp32 graph calibrated on real photos vs the default set gets different ranges
    and different outputs."""
    from mmedge.export.calibration import default_calibration_images
    from mmedge.quantize.onnx_quant import apply_onnx_recipe
    from mmedge.runtime.backends import open_tensor_part
    from mmedge.runtime.preprocess import preprocess_images

    fp32_path, fp32_m = bundles(KQUANT_PRESET)
    static_path, static_m = static_bundle
    src = fp32_path / fp32_m.parts["vision_encoder"].file
    pixels = preprocess_images(default_calibration_images(), fp32_m.image_preprocess)
    default_out = static_path.parent / "enc.default.onnx"
    apply_onnx_recipe("int8-static", src, default_out, calibration=[pixels[i : i + 4] for i in range(0, 16, 4)])
    photo_scales = _activation_scales(static_path / static_m.parts["vision_encoder"].file)
    default_scales = _activation_scales(default_out)
    shared = sorted(set(photo_scales) & set(default_scales))
    assert len(shared) >= 3
    rel = [abs(photo_scales[k] - default_scales[k]) / default_scales[k] for k in shared]
    assert max(rel) > 0.05, "calibration on other images left every activation range unchanged"
    x = np.random.default_rng(0).standard_normal((2, 3, 48, 48)).astype(np.float32)
    a = open_tensor_part(default_out, static_m.parts["vision_encoder"]).run(x)
    b = open_tensor_part(static_path / static_m.parts["vision_encoder"].file, static_m.parts["vision_encoder"]).run(x)
    assert np.abs(a - b).max() > 1e-3


def test_static_needs_calibration_inputs(tmp_path):
    from mmedge.quantize.onnx_quant import apply_onnx_recipe

    with pytest.raises(RecipeError, match="needs calibration"):
        apply_onnx_recipe("int8-static", tmp_path / "a.onnx", tmp_path / "b.onnx", calibration=None)


def test_empty_or_bad_calibration_folder_is_refused_up_front(tmp_path, checkpoints):
    from mmedge.export.exporter import ExportConfig

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(CalibrationError, match="no images"):
        ExportConfig(checkpoint=checkpoints("clip-llama-bpe"), output=tmp_path / "b", encoder="int8-static",
                     calibration_images=empty)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "fake.png").write_text("not a png")
    with pytest.raises(CalibrationError, match="fake.png"):
        ExportConfig(checkpoint=checkpoints("clip-llama-bpe"), output=tmp_path / "b", encoder="int8-static",
                     calibration_images=bad)
    with pytest.raises(CalibrationError, match="not a folder"):
        ExportConfig(checkpoint=checkpoints("clip-llama-bpe"), output=tmp_path / "b", encoder="int8-static",
                     calibration_images=tmp_path / "missing")


def test_executorch_refuses_static_int8_with_its_list(tmp_path, checkpoints):
    from mmedge.export.exporter import ExportConfig

    with pytest.raises(RecipeError, match=r"executorch target cannot do this precision; it can do \['fp32', 'int8', 'int4'\]"):
        ExportConfig(checkpoint=checkpoints("clip-llama-bpe"), output=tmp_path / "b", encoder="int8-static",
                     encoder_target="executorch")
