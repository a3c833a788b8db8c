"""Per-recipe mechanics for ONNX graphs, by onnxruntime's quantization tools."""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from mmedge.errors import RecipeError

INT4_BLOCK_SIZE = 32
# int8 weights take 7 bits (onnxruntime's `reduce_range`). onnxruntime's x86 kernels multiply uint8
# activations by int8 weights with `vpmaddubsw` on AVX2 and AVX-512 without VNNI, which adds two
# products into a saturating int16: 255 * 127 * 2 overflows it, 255 * 64 * 2 does not. VNNI's
# `vpdpbusd` never saturates, so full-range weights gave a bundle that measured cosine 0.9996 where
# it was verified (VNNI) and 0.965 on an AVX2 laptop. With 7-bit weights the integer results are
# the same on every CPU (bit-identical outputs, tested under an emulated Haswell), at the same speed;
# uint8 weights (U8U8) would also be exact but ran 2.5x slower on VNNI.
INT8_REDUCE_RANGE = True


def _fp32(src: Path, dst: Path, calibration=None) -> dict:
    shutil.copyfile(src, dst)
    return {}


def _int8_dynamic(src: Path, dst: Path, calibration=None) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(
            str(prepared), str(dst), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul", "Gemm"],
            reduce_range=INT8_REDUCE_RANGE,
        )
    _require_all_quantized("int8", dst)
    return {"method": "onnxruntime quantize_dynamic", "weight_type": "int8", "per_channel": True,
            "activations": "dynamic uint8", "reduce_range": INT8_REDUCE_RANGE}


def _int4_weight(src: Path, dst: Path, calibration=None) -> dict:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    from .onnx_linear import gemm_to_matmul, weight_matmuls

    model = onnx.load(str(src))
    gemms = gemm_to_matmul(model)  # MatMulNBits takes MatMul only; a 2-D linear layer exports as Gemm
    linear = len(weight_matmuls(model))
    config = DefaultWeightOnlyQuantConfig(block_size=INT4_BLOCK_SIZE, is_symmetric=True, accuracy_level=None)
    quantizer = MatMulNBitsQuantizer(model, algo_config=config)
    level = logging.getLogger().level
    try:
        quantizer.process()
    finally:
        logging.getLogger().setLevel(level)
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)
    n = sum(1 for node in onnx.load(str(dst)).graph.node if node.op_type == "MatMulNBits")
    if n == 0:
        raise RecipeError(f"int4: the graph has {linear} weight matmuls and none could be put in 4 bits; choose int8 "
                          "or fp32 for this part")
    _require_all_quantized("int4", dst)
    return {"method": "MatMulNBits", "bits": 4, "block_size": INT4_BLOCK_SIZE, "symmetric": True, "matmuls_quantized": n,
            **({"gemms_as_matmul": gemms} if gemms else {})}


def _int8_static(src: Path, dst: Path, calibration=None) -> dict:
    """QDQ int8, the form NPU execution providers (QNN, NNAPI, Core ML EP, OpenVINO) take:
    per-channel symmetric int8 weights, uint8 activations with ranges from calibration data."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise RecipeError("int8-static needs calibration inputs; give --calibration-images DIR or use the default set")
    import onnx

    input_name = onnx.load(str(src), load_external_data=False).graph.input[0].name

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self._batches = iter(calibration)

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(dst), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=["MatMul", "Gemm", "Conv"], reduce_range=INT8_REDUCE_RANGE,
        )
    _require_all_quantized("int8-static", dst)
    return {"method": "onnxruntime quantize_static (QDQ)", "weight_type": "int8 per-channel symmetric",
            "reduce_range": INT8_REDUCE_RANGE,
            "activation_type": "uint8, MinMax calibration", "calibration_batches": len(calibration)}


def _require_all_quantized(recipe: str, path: Path) -> None:
    """A quantized part has no weight matmul left in float: refused, never a silent fp32 layer."""
    import onnx

    from .onnx_linear import weight_matmuls

    left = weight_matmuls(onnx.load(str(path)))
    if left:
        raise RecipeError(f"{recipe}: onnxruntime left {len(left)} weight matmuls in float ({', '.join(left[:3])}); "
                          "choose another precision for this part")


ONNX_RECIPES: dict[str, Callable[..., dict]] = {
    "fp32": _fp32,
    "int8": _int8_dynamic,
    "int8-static": _int8_static,
    "int4": _int4_weight,
}
# Recipes that need calibration inputs (the exporter computes them only when one is used).
NEEDS_CALIBRATION = ("int8-static",)
# Recipes whose graph gets onnxruntime's contrib-op fusions first (onnx_fusion.py); not the QDQ
# recipe, which is for NPU execution providers that do not know contrib ops.
CPU_FUSED = ("fp32", "int8", "int4")


def apply_onnx_recipe(recipe: str, src: Path, dst: Path, calibration=None) -> dict:
    """Write `dst` from the fp32 graph `src` at precision `recipe`; returns details for the manifest."""
    if recipe not in ONNX_RECIPES:
        raise RecipeError(f"the ONNX target cannot do precision {recipe!r}; it can do {list(ONNX_RECIPES)}")
    if recipe not in CPU_FUSED:
        return ONNX_RECIPES[recipe](src, dst, calibration)
    from .onnx_fusion import fuse_for_cpu

    with tempfile.TemporaryDirectory(dir=src.parent) as tmp:
        fused = Path(tmp) / "fused.onnx"
        fusions = fuse_for_cpu(src, fused)
        return {**ONNX_RECIPES[recipe](fused, dst, calibration), **fusions}
