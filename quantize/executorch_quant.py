"""Per-recipe mechanics for ExecuTorch/XNNPACK: torchao configs applied to the torch module
before export.

Only dynamic-activation configs are used: XNNPACK runs them as int8 GEMMs. torchao's
weight-only configs (`IntxWeightOnlyConfig`) are not offered: they have been seen to lower
without error and return wrong numbers, and with executorch 1.5.1 here they fail to lower
("Missing out variants: torchao::dequantize_affine"). Verification would refuse either.
"""
from __future__ import annotations

import copy
from typing import Callable

from mmedge.errors import RecipeError

INT4_GROUP_SIZE = 32


def _fp32(module):
    return module, {}


def quiet_torchao_import() -> None:
    # torchao registers enums with torch's pytree at import and torch logs a deprecation per enum.
    import logging

    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)


def _int8_dynamic(module):
    import torch

    quiet_torchao_import()
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, quantize_
    from torchao.quantization.granularity import PerAxis

    module = copy.deepcopy(module)
    quantize_(module, Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8, weight_granularity=PerAxis(0)))
    return module, {"method": "torchao Int8DynamicActivationIntxWeightConfig (8da8w)", "weight": "int8 per-channel",
                    "activations": "dynamic int8 per-token"}


def _int4_dynamic(module):
    import torch

    quiet_torchao_import()
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, quantize_
    from torchao.quantization.granularity import PerGroup

    module = copy.deepcopy(module)
    quantize_(module, Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4,
                                                           weight_granularity=PerGroup(INT4_GROUP_SIZE)))
    return module, {"method": "torchao Int8DynamicActivationIntxWeightConfig (8da4w)", "weight": "int4",
                    "group_size": INT4_GROUP_SIZE, "activations": "dynamic int8 per-token"}


# precision -> (module -> (quantized module, details)). Only Linear layers are quantized;
# the patch-embedding convolution stays fp32.
EXECUTORCH_RECIPES: dict[str, Callable] = {
    "fp32": _fp32,
    "int8": _int8_dynamic,
    "int4": _int4_dynamic,
}


def apply_executorch_recipe(precision: str, module):
    if precision not in EXECUTORCH_RECIPES:
        raise RecipeError(f"the executorch target cannot do precision {precision!r}; it can do {list(EXECUTORCH_RECIPES)}")
    return EXECUTORCH_RECIPES[precision](module)
