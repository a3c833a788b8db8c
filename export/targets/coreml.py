"""Core ML target: a traced torch module -> .mlpackage (mlprogram), dynamic batch.

coremltools converts, compresses and saves on Linux but cannot run or compile a model there;
the Linux-side checks are in `export/coreml_check.py` and their numbers go into the part's
details, with runtime parity recorded as unverified.
"""
from __future__ import annotations

import io
import logging
import warnings
from contextlib import redirect_stderr, redirect_stdout

from mmedge.errors import ExportError
from mmedge.quantize.coreml_quant import COREML_RECIPES, coreml_recipe

from .base import TensorTarget, register_target

MAX_BATCH = 64


def _quiet_coremltools():
    # coremltools announces every missing native proxy (macOS-only) and untested versions on import.
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    with redirect_stderr(io.StringIO()), redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import coremltools

    return coremltools


@register_target
class CoreMLTarget(TensorTarget):
    name = "coreml"
    kind = "mlpackage"
    suffix = "mlpackage"
    precisions = tuple(COREML_RECIPES)

    def export(self, module, inputs, output_name, precision, out, workdir, calibration=None):
        import numpy as np
        import torch

        input_name, example = self.one_input(inputs)
        from ..coreml_check import check_mlpackage

        recipe = coreml_recipe(precision)
        try:
            ct = _quiet_coremltools()
        except ImportError as e:
            raise ExportError(f"coremltools is not installed ({e}); run ./setup.sh") from None
        shape = ct.Shape((ct.RangeDim(1, MAX_BATCH, default=1), *example.shape[1:]))
        try:
            with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()), torch.no_grad():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(module, example)
                model = ct.convert(
                    traced,
                    inputs=[ct.TensorType(name=input_name, shape=shape, dtype=np.float32)],
                    outputs=[ct.TensorType(name=output_name, dtype=np.float32)],
                    convert_to="mlprogram",
                    compute_precision=getattr(ct.precision, recipe.compute_precision),
                    minimum_deployment_target=getattr(ct.target, recipe.deployment_target),
                )
                if recipe.compress is not None:
                    model = recipe.compress(model)
                model.save(str(out))
        except Exception as e:  # coremltools raises many types; report one
            raise ExportError(f"Core ML conversion of {out.name} failed: {type(e).__name__}: {str(e)[:500]}") from None
        with redirect_stderr(io.StringIO()):
            check = check_mlpackage(out, module, example, input_name, output_name, recipe.compression_op)
        return {"minimum_deployment_target": recipe.deployment_target, "deployment_target_reason": recipe.why,
                "compute_precision": recipe.compute_precision, "max_batch": MAX_BATCH, "linux_check": check,
                "runtime_parity": check["runtime_parity"]}
