"""Per-recipe mechanics for ONNX graphs, by onnxruntime's quantization tools."""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from mmedge.errors import RecipeError

INT4_BLOCK_SIZE = 32


def _fp32(src: Path, dst: Path) -> dict:
    shutil.copyfile(src, dst)
    return {}


def _int8_dynamic(src: Path, dst: Path) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(
            str(prepared), str(dst), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul", "Gemm"]
        )
    return {"method": "onnxruntime quantize_dynamic", "weight_type": "int8", "per_channel": True, "activations": "dynamic uint8"}


def _int4_weight(src: Path, dst: Path) -> dict:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    model = onnx.load(str(src))
    config = DefaultWeightOnlyQuantConfig(block_size=INT4_BLOCK_SIZE, is_symmetric=True, accuracy_level=None)
    quantizer = MatMulNBitsQuantizer(model, algo_config=config)
    level = logging.getLogger().level
    try:
        quantizer.process()
    finally:
        logging.getLogger().setLevel(level)
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)
    n = sum(1 for node in onnx.load(str(dst)).graph.node if node.op_type == "MatMulNBits")
    return {"method": "MatMulNBits", "bits": 4, "block_size": INT4_BLOCK_SIZE, "symmetric": True, "matmuls_quantized": n}


ONNX_RECIPES: dict[str, Callable[[Path, Path], dict]] = {
    "fp32": _fp32,
    "int8": _int8_dynamic,
    "int4": _int4_weight,
}


def apply_onnx_recipe(recipe: str, src: Path, dst: Path) -> dict:
    """Write `dst` from the fp32 graph `src` at precision `recipe`; returns details for the manifest."""
    if recipe not in ONNX_RECIPES:
        raise RecipeError(f"the ONNX target cannot do precision {recipe!r}; it can do {list(ONNX_RECIPES)}")
    return ONNX_RECIPES[recipe](src, dst)
