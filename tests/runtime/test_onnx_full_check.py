"""`onnx.checker`'s full check runs on every ONNX part before onnxruntime opens it: a graph that
only the checker catches is refused by name, through the Pipeline too; a pass is remembered under
the part's verified sha256 (a second load skips the parse), a refusal never is, and without a
verified hash the check always runs."""
from __future__ import annotations

import json
import shutil

import onnx
import pytest

from mmedge.bundle import open_bundle, sha256_file
from mmedge.errors import OnnxFormatError
from mmedge.runtime import onnx_full_check
from mmedge.runtime.onnx_full_check import check_onnx_model


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(onnx_full_check.CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def checker_calls(monkeypatch):
    calls = []
    real = onnx.checker.check_model

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(onnx.checker, "check_model", counting)
    return calls


def _projector(bundle) -> tuple[dict, dict]:
    manifest = json.loads((bundle / "manifest.json").read_text())
    return manifest, manifest["parts"]["projector"]


def _dangling_input(path) -> None:
    """Rewire the first node to read a tensor nothing produces: well-formed protobuf, no external
    data (the wire walk passes it), but not a valid graph."""
    model = onnx.load(str(path))
    model.graph.node[0].input[0] = "nothing_makes_this"
    onnx.save(model, str(path))


def test_a_graph_only_the_checker_catches_is_refused_by_name(fp32_bundle, tmp_path, cache):
    path = tmp_path / "p.onnx"
    shutil.copyfile(fp32_bundle / _projector(fp32_bundle)[1]["file"], path)
    _dangling_input(path)
    from mmedge.runtime.onnx_check import check_onnx_self_contained

    assert check_onnx_self_contained(path) > 0  # the structural walk has nothing against it
    sha = sha256_file(path)
    for _ in range(2):  # refused again: a failure is never remembered
        with pytest.raises(OnnxFormatError, match=r"p\.onnx: onnx\.checker refused the graph \(.*nothing_makes_this"):
            check_onnx_model(path, sha)
    assert not (cache / "onnx-checked").exists() or not any((cache / "onnx-checked").iterdir())


def test_the_pipeline_refuses_it_before_onnxruntime(bundle_copy, cache, checker_calls):
    from mmedge.runtime.pipeline import Pipeline

    manifest, part = _projector(bundle_copy)
    path = bundle_copy / part["file"]
    _dangling_input(path)
    part["sha256"], part["size_bytes"] = sha256_file(path), path.stat().st_size  # as an attacker would
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(OnnxFormatError, match="projector.fp32.onnx: onnx.checker refused the graph"):
        Pipeline(bundle_copy)
    assert [c for c in checker_calls if c.endswith("projector.fp32.onnx")]


def test_a_pass_is_remembered_under_the_verified_hash(fp32_bundle, cache, checker_calls):
    part = _projector(fp32_bundle)[1]
    path = fp32_bundle / part["file"]
    assert check_onnx_model(path, part["sha256"]) is True  # parsed and checked
    assert check_onnx_model(path, part["sha256"]) is False  # the same bytes: remembered
    assert len(checker_calls) == 1
    assert (cache / "onnx-checked" / f"{part['sha256']}.onnx-{onnx.__version__}").is_file()
    assert check_onnx_model(path, None) is True and len(checker_calls) == 2  # no verified hash: always checked


def test_only_hash_checked_bundles_offer_a_hash(fp32_bundle):
    part = open_bundle(fp32_bundle).manifest.parts["projector"]
    assert open_bundle(fp32_bundle).verified_sha256(part) == part.sha256
    assert open_bundle(fp32_bundle, check_hashes=False).verified_sha256(part) is None


def test_a_cache_that_cannot_be_written_costs_only_time(fp32_bundle, tmp_path, monkeypatch, checker_calls):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv(onnx_full_check.CACHE_ENV, str(blocker))  # mkdir under a file fails
    part = _projector(fp32_bundle)[1]
    for _ in range(2):
        assert check_onnx_model(fp32_bundle / part["file"], part["sha256"]) is True
    assert len(checker_calls) == 2


@pytest.mark.parametrize("op, accepted", [("SimplifiedLayerNormalization", True), ("SimplifiedLayerNormalisation", False)])
def test_onnxruntimes_rmsnorm_in_the_default_domain_is_checked_not_refused(tmp_path, cache, op, accepted):
    """mmedge's fusions write onnxruntime's SimplifiedLayerNormalization (RMSNorm) in the default
    domain; the checker knows its schema (registered by mmedge), while an unknown default-domain op
    is still refused. The accepted graph really is onnxruntime's op: it runs and gives RMSNorm."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    scale = np.linspace(0.5, 1.5, 8, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node(op, ["x", "scale"], ["y"], axis=-1, epsilon=1e-6)], "rms",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])],
        [numpy_helper.from_array(scale, "scale")])
    path = tmp_path / "rms.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    if not accepted:
        with pytest.raises(OnnxFormatError, match="No Op registered for SimplifiedLayerNormalisation"):
            check_onnx_model(path)
        return
    assert check_onnx_model(path) is True
    x = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    expected = x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-6) * scale
    assert np.abs(y - expected).max() < 1e-5
