"""ONNX target: a torch module with one input and one output -> a .onnx file, dynamic batch.

Precisions are applied to the fp32 graph by onnxruntime's tools (`quantize/onnx_quant.py`).

The example batch is 2: exporting with a batch of 1 silently fixes the batch dimension to 1.
Weights are stored inside the file (no external data) so that a part is one file to hash.
"""
from __future__ import annotations

import io
import logging
import warnings
from contextlib import redirect_stdout
from pathlib import Path

from mmedge.errors import ExportError
from mmedge.quantize.onnx_quant import ONNX_RECIPES, apply_onnx_recipe

from .base import TensorTarget, register_target

OPSET = 18


def export_onnx(module, example, path: Path, input_name: str, output_name: str) -> None:
    import onnx
    import torch

    if example.shape[0] != 2:
        raise ExportError("internal: export the ONNX graph with an example batch of 2 so the batch stays dynamic")
    # The exporter logs one warning per torchvision op it cannot register; torchvision is not
    # part of mmedge's environment and none of its ops are exported.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    batch = torch.export.Dim("batch", min=1, max=1024)
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                input_names=[input_name],
                output_names=[output_name],
                dynamic_shapes=({0: batch},),
                opset_version=OPSET,
                optimize=True,
                verbose=False,
            )
    except Exception as e:  # the exporter raises many types; report one
        raise ExportError(f"torch.onnx.export failed for {path.name}: {type(e).__name__}: {e}") from None
    model = program.model_proto
    if model.ByteSize() >= 2**31 - 1:
        raise ExportError(f"{path.name}: the graph is larger than 2 GB, which a single-file ONNX cannot hold")
    onnx.save_model(model, str(path))
    onnx.checker.check_model(str(path), full_check=True)


@register_target
class OnnxTarget(TensorTarget):
    name = "onnx"
    kind = "onnx"
    suffix = "onnx"
    precisions = tuple(ONNX_RECIPES)

    def export(self, module, example, input_name, output_name, precision, out, workdir, calibration=None):
        fp32_path = workdir / f"{out.stem}.fp32-source.onnx"
        export_onnx(module, example, fp32_path, input_name, output_name)
        details = apply_onnx_recipe(precision, fp32_path, out, calibration)
        details["opset"] = OPSET
        return details
