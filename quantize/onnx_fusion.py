"""Offline graph fusions for onnxruntime's CPU kernels, applied to the fp32 graph before a precision recipe.

torch.onnx's dynamo exporter writes GELU (tanh form: Mul/Pow/Tanh/Add, or erf form) and the
residual Add + LayerNormalization as separate nodes, in patterns onnxruntime's own session-time
fusions do not match. onnxruntime's transformer optimizer (`onnxruntime.transformers.optimizer`)
matches them and writes its contrib ops (FastGelu / Gelu / BiasGelu, SkipLayerNormalization),
which the CPU execution provider runs as single kernels: on a 512-px SigLIP-B/16 tile, 1 thread,
fp32 3.78 s -> 3.53 s and dynamic int8 2.51 s -> 2.23 s (benchmarks/IMPROVEMENTS.md).

Only pattern fusions run (opt_level=0: no onnxruntime session optimizations are baked into the
file, so the graph stays portable across machines). The fusions keep exact semantics (GELU is not
approximated: `enable_gelu_approximation` stays off); verification measures the result against
PyTorch like any other part. The static-int8 (QDQ) recipe is not fused: it is the form NPU execution
providers take, and they do not know onnxruntime's contrib ops.
"""
from __future__ import annotations

import io
import logging
from contextlib import redirect_stdout
from pathlib import Path

# The optimizer's model type only selects which fusions run; "clip" turns on the generic ones
# (GELU, LayerNorm, SkipLayerNorm, bias fusions) and nothing that needs a text model's inputs.
_MODEL_TYPE = "clip"


def fuse_for_cpu(src: Path, dst: Path) -> dict:
    """Write `dst` = `src` with onnxruntime's contrib-op fusions; returns {"graph_fusions": {op: count}}.

    A graph the optimizer cannot process is written unchanged and the reason recorded: the fusions
    are a speed-up, never a condition for exporting."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    quiet = [logging.getLogger(n) for n in ("onnxruntime.transformers", "fusion_base", "onnx_model", "")]
    levels = [log.level for log in quiet]
    for log in quiet:
        log.setLevel(logging.ERROR)
    try:
        with redirect_stdout(io.StringIO()):
            model = optimize_model(str(src), model_type=_MODEL_TYPE, num_heads=0, hidden_size=0,
                                   optimization_options=FusionOptions(_MODEL_TYPE), opt_level=0, use_gpu=False)
            fused = {op: n for op, n in model.get_fused_operator_statistics().items() if n}
            model.save_model_to_file(str(dst), use_external_data_format=False)
    except Exception as e:  # the optimizer raises many types on graphs it does not expect
        dst.write_bytes(src.read_bytes())
        return {"graph_fusions": f"none ({type(e).__name__}: {e})"}
    finally:
        for log, level in zip(quiet, levels):
            log.setLevel(level)
    return {"graph_fusions": fused}
