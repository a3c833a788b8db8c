"""ExecuTorch target: torch.export -> XNNPACK-lowered .pte, dynamic batch.

The example batch is 2 (a batch of 1 is silently specialised to 1). The .pte runs in
ExecuTorch's C++ runtime without torch; mmedge's Python runtime loads it through
`executorch.runtime`, whose bindings import torch (so only ONNX + GGUF bundles are torch-free
in Python).
"""
from __future__ import annotations

import io
import logging
import warnings
from contextlib import redirect_stdout

from mmedge.errors import ExportError
from mmedge.quantize.executorch_quant import EXECUTORCH_RECIPES, apply_executorch_recipe, quiet_torchao_import

from .base import TensorTarget, register_target

MAX_BATCH = 64


@register_target
class ExecuTorchTarget(TensorTarget):
    name = "executorch"
    kind = "pte"
    suffix = "pte"
    precisions = tuple(EXECUTORCH_RECIPES)

    def export(self, module, inputs, output_name, precision, out, workdir, calibration=None):
        import torch

        input_name, example = self.one_input(inputs)
        quiet_torchao_import()  # executorch imports torchao
        try:
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
            from executorch.exir import to_edge_transform_and_lower
        except ImportError as e:
            raise ExportError(f"executorch is not installed ({e}); run ./setup.sh or pip install executorch==1.5.1") from None
        if example.shape[0] != 2:
            raise ExportError("internal: export with an example batch of 2 so the batch stays dynamic")
        # The program records the example's memory layout (its dim order): a permuted view, such as
        # a SigLIP encoder's output, would make it expect that layout, and XNNPACK then refuses every
        # contiguous input the runtimes give it ("Propagating input shapes failed").
        example = example.contiguous()
        module, details = apply_executorch_recipe(precision, module)
        batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
        logging.getLogger("torch._export").setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings(), redirect_stdout(io.StringIO()), torch.no_grad():
                warnings.simplefilter("ignore")
                program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
                lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
        except Exception as e:  # export and lowering raise many types; report one
            raise ExportError(f"ExecuTorch export of {out.name} failed: {type(e).__name__}: {str(e)[:500]}") from None
        out.write_bytes(lowered.buffer)
        details.update(backend="XNNPACK", max_batch=MAX_BATCH, input_name=input_name, output_name=output_name)
        return details
