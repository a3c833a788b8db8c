"""Per-recipe mechanics for Core ML (mlprogram): compute precision, weight compression, and the
minimum deployment target each one needs.

The deployment target follows from the precision: per-block int4 (`constexpr_blockwise_shift_scale`)
exists from iOS 18 / macOS 15; 4-bit palettization is offered as the iOS 17 option; the rest runs
from iOS 16 / macOS 13.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from mmedge.errors import RecipeError

INT4_BLOCK_SIZE = 32


@dataclass(frozen=True)
class CoreMLRecipe:
    deployment_target: str  # a coremltools `ct.target` member name
    why: str
    compute_precision: str  # "FLOAT32" | "FLOAT16"
    compress: Callable | None  # mlmodel -> mlmodel
    compression_op: str | None  # the MIL op the saved program must hold for compressed weights


def _int8(model):
    from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

    config = OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=0)
    return linear_quantize_weights(model, OptimizationConfig(global_config=config))


def _int4_block(model):
    from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

    config = OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int4", granularity="per_block",
                                     block_size=INT4_BLOCK_SIZE, weight_threshold=0)
    return linear_quantize_weights(model, OptimizationConfig(global_config=config))


def _palette4(model):
    from coremltools.optimize.coreml import OpPalettizerConfig, OptimizationConfig, palettize_weights

    return palettize_weights(model, OptimizationConfig(global_config=OpPalettizerConfig(nbits=4, mode="kmeans",
                                                                                        weight_threshold=0)))


COREML_RECIPES: dict[str, CoreMLRecipe] = {
    "fp32": CoreMLRecipe("iOS16", "mlprogram with float32 compute", "FLOAT32", None, None),
    "fp16": CoreMLRecipe("iOS16", "mlprogram with float16 compute (the Neural Engine's precision)", "FLOAT16", None, None),
    "int8": CoreMLRecipe("iOS16", "int8 per-channel weights (constexpr_affine_dequantize), float compute", "FLOAT32",
                         _int8, "constexpr_affine_dequantize"),
    "int4": CoreMLRecipe("iOS18", "per-block int4 weights (blocks of 32) need iOS 18 / macOS 15", "FLOAT32",
                         _int4_block, "constexpr_blockwise_shift_scale"),
    "int4-palette": CoreMLRecipe("iOS17", "4-bit k-means palettization: the option for iOS 17 / macOS 14", "FLOAT32",
                                 _palette4, "constexpr_lut_to_dense"),
}


def coreml_recipe(precision: str) -> CoreMLRecipe:
    if precision not in COREML_RECIPES:
        raise RecipeError(f"the coreml target cannot do precision {precision!r}; it can do {list(COREML_RECIPES)}")
    return COREML_RECIPES[precision]
