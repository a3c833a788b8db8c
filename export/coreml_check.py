"""What Linux can check of a saved .mlpackage (Core ML itself runs only on macOS / iOS).

1. The saved spec loads, is an mlprogram, and has the expected input/output names.
2. Its ops are as expected: the compression op of the recipe holds the weights.
3. The weights, decompressed from the saved file, put back into the PyTorch part, reproduce its
   output within the recipe's floor (this measures the compression, not Core ML's kernels).
Runtime parity stays unverified until the bundle is verified on a Mac.
"""
from __future__ import annotations

import copy
import os
from collections import Counter
from pathlib import Path

import numpy as np

from mmedge.errors import ExportError

RUNTIME_PARITY = "unverified: Core ML runs only on macOS/iOS; run `mmedge verify` on a Mac to measure it"
_SUFFIXES = ("_quantized", "_palettized", "_to_fp16")


def _load_program(path: Path):
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_to_pymil

    try:
        spec = ct.utils.load_spec(str(path))
    except Exception as e:
        raise ExportError(f"{path.name}: the saved Core ML package does not load: {e}") from None
    if spec.WhichOneof("Type") != "mlProgram":
        raise ExportError(f"{path.name}: expected an mlprogram, found {spec.WhichOneof('Type')}")
    weights = os.path.join(str(path), "Data", "com.apple.CoreML", "weights")
    program = milproto_to_pymil(model_spec=spec, specification_version=spec.specificationVersion, file_weights_dir=weights)
    return spec, program


def _weight_values(program) -> dict[str, np.ndarray]:
    """Dense weights by MIL name (compression suffixes removed), decompressed where compressed."""
    out = {}
    for op in program.functions["main"].operations:
        if op.op_type.startswith("constexpr"):
            value = op.materialized_val_inference()
        elif op.op_type == "const" and np.ndim(op.outputs[0].val) >= 1:
            value = op.outputs[0].val
        else:
            continue
        name = op.name
        for suffix in _SUFFIXES:
            name = name.removesuffix(suffix)
        out[name] = np.asarray(value, dtype=np.float32)
    return out


def check_mlpackage(path: Path, module, example, input_name: str, output_name: str, compression_op: str | None) -> dict:
    import torch

    spec, program = _load_program(path)
    inputs = [i.name for i in spec.description.input]
    outputs = [o.name for o in spec.description.output]
    if inputs != [input_name] or outputs != [output_name]:
        raise ExportError(f"{path.name}: inputs {inputs} / outputs {outputs}, expected [{input_name}] / [{output_name}]")
    ops = Counter(op.op_type for op in program.functions["main"].operations)
    weights = _weight_values(program)
    restored = copy.deepcopy(module)
    matched, compressed_expected, missing = 0, 0, []
    with torch.no_grad():
        for name, param in restored.named_parameters():
            if param.ndim < 2:
                continue
            compressed_expected += 1
            value = weights.get(name.replace(".", "_"))
            if value is None or value.shape != tuple(param.shape):
                # e.g. a position-embedding table the converter folded into a constant
                missing.append(name)
                continue
            param.copy_(torch.from_numpy(value))
            matched += 1
        reference = module(example)
        candidate = restored(example)
    if compression_op and ops.get(compression_op, 0) == 0:
        raise ExportError(f"{path.name}: expected {compression_op} ops holding the compressed weights, found none")
    if matched == 0:
        raise ExportError(f"{path.name}: no weight of the saved program could be matched to the PyTorch part")
    ref, cand = reference.double().flatten(), candidate.double().flatten()
    return {
        "spec_version": int(spec.specificationVersion),
        "ops": dict(sorted(ops.items())),
        "weights_matched": f"{matched}/{compressed_expected}",
        "weights_not_in_program": missing,
        "cosine": float(ref @ cand / (ref.norm() * cand.norm())),
        "max_abs_diff": float((ref - cand).abs().max()),
        "method": "weights decompressed from the saved .mlpackage, run in PyTorch",
        "runtime_parity": RUNTIME_PARITY,
    }
