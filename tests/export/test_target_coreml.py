"""The Core ML target, checked as far as Linux can: the saved package loads, its inputs, outputs
and ops are as expected, and its decompressed weights put back into the PyTorch part reproduce
that part within the floor. Runtime parity is recorded as unverified; the runtime refuses
Core ML parts off macOS."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from mmedge.errors import BackendError, IntegrityError, RecipeError, UnsafePathError
from mmedge.quantize.recipes import TENSOR_RECIPES

from ..conftest import KQUANT_PRESET

# (encoder precision, projector precision) -> expected deployment targets and spec versions
COMBOS = {
    ("fp32", "fp16"): (("iOS16", 7), ("iOS16", 7)),
    ("int8", "int4"): (("iOS16", 7), ("iOS18", 9)),
    ("int4-palette", "fp32"): (("iOS17", 8), ("iOS16", 7)),
}
COMPRESSION_OPS = {"int8": "constexpr_affine_dequantize", "int4": "constexpr_blockwise_shift_scale",
                   "int4-palette": "constexpr_lut_to_dense"}


@pytest.fixture(scope="module", params=sorted(COMBOS), ids=lambda c: "-".join(c))
def coreml_bundle(request, tmp_path_factory, checkpoints):
    from mmedge.export.exporter import ExportConfig, export_bundle

    encoder, projector = request.param
    out = tmp_path_factory.mktemp("coreml") / "bundle"
    m = export_bundle(ExportConfig(checkpoint=checkpoints(KQUANT_PRESET), output=out, encoder_target="coreml",
                                   projector_target="coreml", encoder=encoder, projector=projector, llm="Q8_0"))
    return request.param, out, m


def test_linux_side_checks(coreml_bundle):
    (encoder, projector), path, m = coreml_bundle
    for role, precision, (target, spec_version) in (("vision_encoder", encoder, COMBOS[(encoder, projector)][0]),
                                                     ("projector", projector, COMBOS[(encoder, projector)][1])):
        part = m.parts[role]
        assert part.kind == "mlpackage" and (path / part.file).is_dir()
        d = part.details
        assert d["minimum_deployment_target"] == target and d["linux_check"]["spec_version"] == spec_version
        assert "unverified" in d["runtime_parity"]
        check = d["linux_check"]
        assert check["cosine"] >= TENSOR_RECIPES[precision].min_cosine
        matched, total = map(int, check["weights_matched"].split("/"))
        # Only lookup tables the converter folds into constants may be absent by name.
        assert matched == total - len(check["weights_not_in_program"]) > 0
        assert all("position_embedding" in n for n in check["weights_not_in_program"])
        if precision in COMPRESSION_OPS:
            assert check["ops"][COMPRESSION_OPS[precision]] >= matched
            assert check["cosine"] < 0.99999  # compressed for real
        elif precision == "fp16":
            assert check["ops"]["cast"] >= 2 and check["cosine"] < 1.0  # fp16 weights, float32 I/O
        else:
            assert check["cosine"] > 0.9999999
        report = m.verification[role]
        assert report["cosine"] == check["cosine"] and "unverified" in report["runtime_parity"]
    v = m.verification
    assert v["end_to_end"] == [] and "Core ML runs only on macOS" in v["end_to_end_unverified"]
    assert v["llm"]["top1_agreement"] >= 0.9  # the GGUF is still measured for real


def test_runtime_refuses_core_ml_off_macos(coreml_bundle):
    from mmedge.runtime.pipeline import Pipeline

    _, path, _ = coreml_bundle
    if sys.platform == "darwin":
        pytest.skip("on macOS Core ML parts run; this checks the refusal elsewhere")
    with pytest.raises(BackendError, match="Core ML .mlpackage and Core ML runs only on macOS/iOS"):
        Pipeline(path)
    proc = subprocess.run([sys.executable, "-m", "mmedge.cli", "run", str(path), "--prompt", "hi"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--target onnx" in proc.stderr and "Traceback" not in proc.stderr


def test_altered_mlpackage_is_caught_before_loading(coreml_bundle, tmp_path):
    from mmedge.bundle import open_bundle

    _, path, m = coreml_bundle
    for damage in ("flip", "extra", "symlink"):
        copy = tmp_path / damage
        shutil.copytree(path, copy, symlinks=True)
        package = copy / m.parts["projector"].file
        weights = next(p for p in sorted(package.rglob("*")) if p.is_file() and p.name == "weight.bin")
        if damage == "flip":
            data = bytearray(weights.read_bytes())
            data[len(data) // 2] ^= 0x01
            weights.write_bytes(bytes(data))
            with pytest.raises(IntegrityError, match="sha256 of projector"):
                open_bundle(copy)
        elif damage == "extra":
            (package / "Data" / "extra.bin").write_bytes(b"x" * 8)
            with pytest.raises(IntegrityError, match="bytes, the manifest says"):
                open_bundle(copy)
        else:
            (package / "Data" / "link").symlink_to("/etc/hostname")
            with pytest.raises(UnsafePathError, match="symlink"):
                open_bundle(copy)


@pytest.mark.parametrize("target, precision, can", [
    ("onnx", "int4-palette", "['fp32', 'int8', 'int8-static', 'int4']"),
    ("executorch", "fp16", "['fp32', 'int8', 'int4']"),
    ("coreml", "int8-static", "['fp32', 'fp16', 'int8', 'int4', 'int4-palette']"),
])
def test_targets_refuse_what_they_cannot_do(tmp_path, checkpoints, target, precision, can):
    from mmedge.export.exporter import ExportConfig

    with pytest.raises(RecipeError, match=f"the {target} target cannot do this precision; it can do {can}".replace("[", r"\[")
                       .replace("]", r"\]")):
        ExportConfig(checkpoint=checkpoints("clip-llama-bpe"), output=tmp_path / "b", encoder_target=target, encoder=precision)
