"""Recipes: unknown precisions are refused up front with the list of what exists."""
from __future__ import annotations

import pytest

from mmedge.errors import RecipeError
from mmedge.quantize.onnx_quant import ONNX_RECIPES, apply_onnx_recipe
from mmedge.quantize.recipes import LLM_RECIPES, TENSOR_RECIPES, llm_recipe, tensor_recipe


def test_every_tensor_recipe_has_mechanics_somewhere():
    from mmedge.quantize.coreml_quant import COREML_RECIPES
    from mmedge.quantize.executorch_quant import EXECUTORCH_RECIPES

    assert set(ONNX_RECIPES) == {"fp32", "int8", "int8-static", "int4"}
    assert set(COREML_RECIPES) == {"fp32", "fp16", "int8", "int4", "int4-palette"}
    assert set(ONNX_RECIPES) | set(EXECUTORCH_RECIPES) | set(COREML_RECIPES) == set(TENSOR_RECIPES)


def test_executorch_mechanics_are_a_subset():
    from mmedge.quantize.executorch_quant import EXECUTORCH_RECIPES

    assert set(EXECUTORCH_RECIPES) == {"fp32", "int8", "int4"} and set(EXECUTORCH_RECIPES) < set(TENSOR_RECIPES)


def test_floors_tighten_with_precision():
    assert TENSOR_RECIPES["fp32"].min_cosine > TENSOR_RECIPES["int8"].min_cosine > TENSOR_RECIPES["int4"].min_cosine
    assert TENSOR_RECIPES["int8"].min_cosine >= TENSOR_RECIPES["int8-static"].min_cosine
    # F32 is judged by its logit difference (an exact type); the quantized types by top-1, loosening.
    assert LLM_RECIPES["F32"].exact and not any(LLM_RECIPES[t].exact for t in ("F16", "Q8_0", "Q4_0", "Q4_K_M"))
    assert LLM_RECIPES["F16"].min_top1 > LLM_RECIPES["Q8_0"].min_top1 > LLM_RECIPES["Q4_0"].min_top1


def test_every_llama_cpp_architecture_has_an_exact_tolerance():
    from mmedge.export.gguf.backbone import ARCHITECTURES, F32_LOGIT_TOLERANCE

    assert {spec.gguf_arch for spec in ARCHITECTURES.values()} == set(F32_LOGIT_TOLERANCE)
    assert all(0 < t < 1e-2 for t in F32_LOGIT_TOLERANCE.values())


@pytest.mark.parametrize("bad", ["int3", "FP32", "", "q8_0"])
def test_unknown_tensor_precision(bad):
    with pytest.raises(RecipeError, match=r"choose one of \['fp32', 'fp16', 'int8', 'int8-static', 'int4', 'int4-palette'\]"):
        tensor_recipe(bad, "encoder")


@pytest.mark.parametrize("bad", ["Q2_Z", "f16", "Q4_K_S"])
def test_unknown_llm_type(bad):
    with pytest.raises(RecipeError, match="Q4_K_M"):
        llm_recipe(bad)


def test_apply_unknown_recipe(tmp_path):
    with pytest.raises(RecipeError, match="can do"):
        apply_onnx_recipe("int2", tmp_path / "a.onnx", tmp_path / "b.onnx")
