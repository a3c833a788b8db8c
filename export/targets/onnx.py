"""ONNX target: a torch module with named inputs and one output -> a .onnx file, dim 0 dynamic.

Precisions are applied to the fp32 graph by onnxruntime's tools (`quantize/onnx_quant.py`).

Every input's dim 0 is one shared dynamic size (a batch of tiles, or Qwen2-VL's patches of one
image together with their rotary ids). Examples must have dim 0 >= 2: exporting with 1 silently
fixes the dimension to 1.
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


def export_onnx(module, inputs: dict, path: Path, output_name: str) -> None:
    import onnx
    import torch

    sizes = {int(x.shape[0]) for x in inputs.values()}
    if len(sizes) != 1 or min(sizes) < 2:
        raise ExportError(f"internal: export the ONNX graph with one example dim 0 of at least 2 for every input "
                          f"(got {sizes}) so that it stays dynamic")
    # The exporter logs one warning per torchvision op it cannot register; torchvision is not
    # part of mmedge's environment and none of its ops are exported.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    batch = torch.export.Dim("batch", min=1, max=1024)
    # dim 0 shared; further dynamic dims a module declares per input ({input: {dim: name}}, one Dim
    # per name: InstructBLIP's projector takes the prompt's Q-Former ids and mask [batch, text]).
    declared = getattr(module, "dynamic_dims", {})
    dims = {n: torch.export.Dim(n, min=1, max=4096) for per in declared.values() for n in per.values()}
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                tuple(inputs.values()),
                dynamo=True,
                input_names=list(inputs),
                output_names=[output_name],
                dynamic_shapes=tuple({0: batch, **{d: dims[n] for d, n in declared.get(name, {}).items()}}
                                     for name in inputs),
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
    multi_input = True

    def export(self, module, inputs, output_name, precision, out, workdir, calibration=None):
        fp32_path = workdir / f"{out.stem}.fp32-source.onnx"
        export_onnx(module, inputs, fp32_path, output_name)
        details = apply_onnx_recipe(precision, fp32_path, out, calibration)
        details["opset"] = OPSET
        return details
