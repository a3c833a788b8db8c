"""`onnx.checker`'s full check (structure, operator schemas, strict shape and type inference) on an
ONNX part before onnxruntime opens it, with its verdicts remembered by content hash.

The check parses the whole model: for SmolVLM's 346 MB fp32 encoder it takes ~1 s and ~660 MB of
transient memory, which would nearly double the part's load time and peak memory on every start.
A pass is therefore recorded under the file's sha256 (the one `open_bundle` has just compared with
the manifest) and the `onnx` version that gave it; a later load of the same bytes skips the parse.
The record is an empty file in the user's cache folder, so whoever could forge one could already
replace the runtime itself; without a verified hash (hashes not checked) the check always runs.
Failures are never recorded: a refused file is refused again, with the same message.

onnxruntime registers some of its contrib operators in the default ONNX domain, and mmedge's
fusions (quantize/onnx_fusion.py) write one of them: `SimplifiedLayerNormalization` (RMSNorm, in
Gemma 3's projector and Qwen2.5-VL's encoder). The `onnx` package does not know it, so its schema
(onnxruntime's contrib-op documentation: inputs X and scale, output Y and an optional
inv_std_var; attributes axis, epsilon, stash_type) is registered here before the first check, and
the checker validates those nodes like any other instead of refusing the graph.
"""
from __future__ import annotations

import os
from pathlib import Path

from mmedge.errors import BackendError, OnnxFormatError

CACHE_ENV = "MMEDGE_CACHE_DIR"  # overrides the cache folder (tests, read-only homes)


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mmedge"


def _verdict_path(sha256: str, onnx_version: str) -> Path:
    return cache_root() / "onnx-checked" / f"{sha256}.onnx-{onnx_version}"


def _register_onnxruntime_schemas(onnx) -> None:
    from onnx.defs import OpSchema

    if onnx.defs.has("SimplifiedLayerNormalization"):
        return
    floats = ["tensor(float)", "tensor(float16)", "tensor(double)", "tensor(bfloat16)"]
    param = OpSchema.FormalParameter
    schema = OpSchema(
        "SimplifiedLayerNormalization", "", 1,
        "onnxruntime contrib op: RMS normalization over `axis` and after, times `scale`.",
        inputs=[param("X", "T"), param("scale", "V")],
        outputs=[param("Y", "V"), param("inv_std_var", "U", param_option=OpSchema.FormalParameterOption.Optional)],
        type_constraints=[("T", floats, "input"), ("U", ["tensor(float)", "tensor(double)"], "statistics"),
                          ("V", floats, "output and scale")],
        attributes=[OpSchema.Attribute("axis", OpSchema.AttrType.INT, "first normalized axis", required=False),
                    OpSchema.Attribute("epsilon", OpSchema.AttrType.FLOAT, "added to the variance", required=False),
                    OpSchema.Attribute("stash_type", OpSchema.AttrType.INT, "the statistics' type", required=False)],
    )
    onnx.defs.register_schema(schema)


def check_onnx_model(path: str | Path, verified_sha256: str | None = None) -> bool:
    """Raise OnnxFormatError unless `onnx.checker.check_model(full_check=True)` accepts the file.
    `verified_sha256`: the file's hash, already compared with the bundle's manifest; a pass is
    remembered under it. Returns True when the checker ran, False when a remembered pass was used."""
    path = Path(path)
    try:
        import onnx
        import onnx.checker
    except ImportError as e:
        raise BackendError(f"the onnx package is missing ({e}); the runtime checks every ONNX part with it before "
                           "loading: pip install 'mmedge[runtime]'") from None
    _register_onnxruntime_schemas(onnx)
    verdict = _verdict_path(verified_sha256, onnx.__version__) if verified_sha256 else None
    if verdict is not None and verdict.is_file():
        return False
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # ValidationError, InferenceError, parse errors: one message for all
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OnnxFormatError(f"{path.name}: onnx.checker refused the graph ({first_line[:300]}); the part is damaged "
                              "or was not written by mmedge export: re-export the bundle") from None
    if verdict is not None:
        _remember(verdict)
    return True


def _remember(verdict: Path) -> None:
    """Best effort: a cache that cannot be written (read-only home, full disk) only costs time."""
    try:
        verdict.parent.mkdir(parents=True, exist_ok=True)
        verdict.touch()
    except OSError:
        pass
