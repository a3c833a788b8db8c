"""Several targets in one bundle: every variant is verified and hashed; the runtime picks one."""
from __future__ import annotations

import json
import shutil

import pytest

from mmedge.errors import BackendError, IntegrityError, ManifestError, RecipeError
from mmedge.export.verify_inputs import synthetic_photo

from ..verification_checks import assert_end_to_end_matches


@pytest.fixture(scope="module")
def multi_bundle(tmp_path_factory, checkpoints):
    from mmedge.export.exporter import ExportConfig, export_bundle

    out = tmp_path_factory.mktemp("multi") / "bundle"
    m = export_bundle(ExportConfig(checkpoint=checkpoints("clip-llama-bpe"), output=out,
                                   extra_targets=("executorch", "coreml")))
    return out, m


def test_every_variant_is_in_the_manifest_and_verified(multi_bundle):
    path, m = multi_bundle
    for role in ("vision_encoder", "projector"):
        kinds = [p.kind for p in m.candidates(role)]
        assert kinds == ["onnx", "pte", "mlpackage"]
        assert all((path / p.file).exists() for p in m.candidates(role))
        alts = m.verification["alternatives"][role]
        assert [a["target"] for a in alts] == ["executorch", "coreml"]
        assert all(a["passed"] and a["cosine"] > 0.99999 for a in alts)
    assert_end_to_end_matches(m.verification)


def test_runtime_picks_the_asked_variant(multi_bundle):
    from mmedge.runtime.pipeline import GenerationParams, Pipeline, RuntimeOptions

    path, _ = multi_bundle
    params = GenerationParams(max_new_tokens=12, min_new_tokens=12)
    image = synthetic_photo(90, 60, seed=41)
    results = {}
    for target in ("auto", "onnx", "executorch"):
        pipe = Pipeline(path, RuntimeOptions(exact=True, n_ctx=1024, target=target))
        try:
            r = pipe.generate([image], "What is this?", params)
            results[target] = (r.tokens, r.stats.providers["vision_encoder"])
        finally:
            pipe.close()
    assert results["auto"][1] == results["onnx"][1] == "CPUExecutionProvider"
    assert results["executorch"][1] == "ExecuTorch XnnpackBackend"
    assert results["auto"][0] == results["onnx"][0] == results["executorch"][0]
    with pytest.raises(BackendError, match="Core ML"):
        Pipeline(path, RuntimeOptions(target="coreml"))
    with pytest.raises(BackendError, match=r"compiled for \['onnx', 'executorch', 'coreml'\]"):
        Pipeline(path, RuntimeOptions(target="tflite"))


def test_altered_alternative_is_caught(multi_bundle, tmp_path):
    from mmedge.bundle import open_bundle

    path, m = multi_bundle
    copy = tmp_path / "b"
    shutil.copytree(path, copy)
    pte = copy / m.alternatives["projector"][0].file
    data = bytearray(pte.read_bytes())
    data[100] ^= 0xFF
    pte.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"alternatives\.projector\[0\]: sha256"):
        open_bundle(copy)


def test_core_ml_primary_with_an_onnx_variant_runs_end_to_end_here(tmp_path, checkpoints):
    """Off macOS the runtime takes the ONNX variant, so the end-to-end check runs for real."""
    from mmedge.export.exporter import ExportConfig, export_bundle

    m = export_bundle(ExportConfig(checkpoint=checkpoints("clip-llama-bpe"), output=tmp_path / "b", encoder_target="coreml",
                                   projector_target="coreml", extra_targets=("onnx",)))
    v = m.verification
    assert v["selected_targets"] == {"vision_encoder": "onnx", "projector": "onnx"}
    assert_end_to_end_matches(v)
    assert "unverified" in v["vision_encoder"]["runtime_parity"]


def test_bad_multi_target_requests(tmp_path, checkpoints, multi_bundle):
    from mmedge.export.exporter import ExportConfig
    from mmedge.manifest import Manifest

    with pytest.raises(RecipeError, match="each target once"):
        ExportConfig(checkpoint=checkpoints("clip-llama-bpe"), output=tmp_path / "b", extra_targets=("onnx",))
    with pytest.raises(RecipeError, match="executorch target cannot do"):
        ExportConfig(checkpoint=checkpoints("clip-llama-bpe"), output=tmp_path / "b", encoder="int8-static",
                     extra_targets=("executorch",))
    path, _ = multi_bundle
    raw = json.loads((path / "manifest.json").read_text())
    bad = json.loads(json.dumps(raw))
    bad["alternatives"]["llm"] = [raw["parts"]["llm"]]
    with pytest.raises(ManifestError, match="'llm' cannot have alternatives"):
        Manifest.from_dict(bad)
    bad = json.loads(json.dumps(raw))
    bad["alternatives"]["projector"][0]["file"] = raw["parts"]["projector"]["file"]
    with pytest.raises(ManifestError, match="two parts name the same file"):
        Manifest.from_dict(bad)
