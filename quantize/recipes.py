"""Precision recipes: what each precision means per part kind, and the floor verify enforces.

A floor is the worst agreement with the PyTorch reference a compiled part may show and still
be accepted. The numbers are set from what the tiny random-weight test models measure (see
README, "Precision floors"): random weights are harder to quantize than trained ones (no
outlier structure to exploit, flat logit distributions), so a real model clears them easily.
"""
from __future__ import annotations

from dataclasses import dataclass

from mmedge.errors import RecipeError


@dataclass(frozen=True)
class TensorRecipe:
    """Precision of an encoder or projector graph."""

    name: str
    description: str
    min_cosine: float


@dataclass(frozen=True)
class LlmRecipe:
    """A GGUF file type. `written_by`: our writer, or llama_model_quantize from the F32 file.

    A quantized type is judged by its teacher-forced top-1 agreement with PyTorch (`min_top1`); an
    exact type (F32) by its largest logit difference, within the architecture's tolerance
    (`export/gguf/backbone.py: F32_LOGIT_TOLERANCE`), because a top-1 share moves with near ties
    (which another CPU's summation order can flip) and hides a lost hyper-parameter."""

    name: str
    description: str
    min_top1: float | None  # None: an exact type, judged by its logit difference
    written_by: str  # "writer" | "llama_model_quantize"

    @property
    def exact(self) -> bool:
        return self.min_top1 is None


TENSOR_RECIPES: dict[str, TensorRecipe] = {
    r.name: r
    for r in (
        TensorRecipe("fp32", "float32 weights and activations", min_cosine=0.99999),
        TensorRecipe("fp16", "float16 compute (Core ML)", min_cosine=0.999),
        TensorRecipe("int8", "int8 per-channel weights (ONNX/ExecuTorch: dynamic int8 activations; Core ML: weight-only)",
                     min_cosine=0.99),
        TensorRecipe("int8-static", "QDQ int8 for NPUs: per-channel int8 weights, uint8 activations calibrated on images",
                     min_cosine=0.98),
        TensorRecipe("int4", "int4 weights in blocks of 32 (MatMulNBits / 8da4w / Core ML per-block)", min_cosine=0.98),
        TensorRecipe("int4-palette", "4-bit k-means palettized weights (Core ML, iOS 17)", min_cosine=0.98),
    )
}

LLM_RECIPES: dict[str, LlmRecipe] = {
    r.name: r
    for r in (
        LlmRecipe("F32", "float32, bit-faithful to the checkpoint", min_top1=None, written_by="writer"),
        LlmRecipe("F16", "float16 weights (norms stay F32)", min_top1=0.95, written_by="writer"),
        LlmRecipe("Q8_0", "8-bit blocks of 32", min_top1=0.90, written_by="llama_model_quantize"),
        LlmRecipe("Q4_0", "4-bit blocks of 32", min_top1=0.60, written_by="llama_model_quantize"),
        LlmRecipe("Q4_K_M", "4-bit k-quants, mixed (needs rows that are multiples of 256)", min_top1=0.60, written_by="llama_model_quantize"),
    )
}


def tensor_recipe(name: str, part: str) -> TensorRecipe:
    if name not in TENSOR_RECIPES:
        raise RecipeError(f"--{part} {name!r}: unknown precision; choose one of {list(TENSOR_RECIPES)}")
    return TENSOR_RECIPES[name]


def llm_recipe(name: str) -> LlmRecipe:
    if name not in LLM_RECIPES:
        raise RecipeError(f"--llm {name!r}: unknown GGUF type; choose one of {list(LLM_RECIPES)}")
    return LLM_RECIPES[name]
