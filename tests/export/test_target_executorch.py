"""The ExecuTorch target: .pte parts lowered to XNNPACK, alone and mixed with ONNX parts."""
from __future__ import annotations

import pytest

from mmedge.errors import BelowFloorError, IntegrityError, RecipeError
from mmedge.export.verify_inputs import synthetic_photo
from mmedge.quantize.recipes import LLM_RECIPES, TENSOR_RECIPES

from ..conftest import KQUANT_PRESET
from ..hostile_helpers import FEW_CASE_IDS as HOSTILE_IDS, FEW_CASES as HOSTILE_CASES, assert_ran_or_refused, run_damaged_part
from ..verification_checks import assert_end_to_end_matches


@pytest.fixture(scope="module")
def et_fp32(bundles_with_targets):
    return bundles_with_targets("clip-llama-bpe", ("executorch", "fp32"), ("executorch", "fp32"), "F32")


def test_fp32_pte_bundle_reproduces_generate(et_fp32, bundles):
    from mmedge.runtime.pipeline import GenerationParams, Pipeline, RuntimeOptions

    path, m = et_fp32
    assert [m.parts[r].kind for r in ("vision_encoder", "projector", "llm")] == ["pte", "pte", "gguf"]
    v = m.verification
    assert_end_to_end_matches(v)
    assert v["vision_encoder"]["cosine"] > 0.99999 and v["projector"]["cosine"] > 0.99999
    # Independently: the .pte bundle and the ONNX bundle of the same checkpoint give the same tokens.
    images = [synthetic_photo(77, 120, seed=31), synthetic_photo(50, 50, seed=32)]
    params = GenerationParams(max_new_tokens=16, min_new_tokens=16)
    tokens = []
    for bundle in (path, bundles("clip-llama-bpe")[0]):
        pipe = Pipeline(bundle, RuntimeOptions(exact=True, n_ctx=1024))
        try:
            result = pipe.generate(images, "Compare <image> and <image>.", params)
            tokens.append(result.tokens)
            providers = result.stats.providers
        finally:
            pipe.close()
    assert tokens[0] == tokens[1] and len(set(tokens[0])) > 4
    assert providers["vision_encoder"] == "CPUExecutionProvider"  # the last one run was the ONNX bundle


def test_pte_batch_is_dynamic(et_fp32):
    import numpy as np

    from mmedge.runtime.backends import open_tensor_part

    path, m = et_fp32
    enc = open_tensor_part(path / m.parts["vision_encoder"].file, m.parts["vision_encoder"])
    assert enc.provider == "ExecuTorch XnnpackBackend"
    x = np.random.default_rng(0).standard_normal((3, 3, 48, 48)).astype(np.float32)
    batched = enc.run(x)
    single = np.concatenate([enc.run(x[i : i + 1]) for i in range(3)])
    assert batched.shape == (3, 36, 32)
    assert np.abs(batched - single).max() < 1e-4


@pytest.mark.parametrize(
    "encoder, projector, llm",
    [(("executorch", "int8"), ("onnx", "fp32"), "Q4_K_M"), (("onnx", "int8"), ("executorch", "int4"), "Q8_0")],
    ids=["et-int8-enc+onnx-fp32-proj+Q4_K_M", "onnx-int8-enc+et-int4-proj+Q8_0"],
)
def test_mixed_bundles_run_and_verify(bundles_with_targets, encoder, projector, llm):
    from mmedge.runtime.pipeline import GenerationParams, Pipeline

    path, m = bundles_with_targets(KQUANT_PRESET, encoder, projector, llm)
    v = m.verification
    for role, (target, precision) in (("vision_encoder", encoder), ("projector", projector)):
        assert m.parts[role].details["target"] == target
        assert m.parts[role].kind == {"onnx": "onnx", "executorch": "pte"}[target]
        assert v[role]["cosine"] >= TENSOR_RECIPES[precision].min_cosine
        assert v[role]["max_abs_diff"] > 1e-4 or precision == "fp32"  # quantized for real
    assert v["llm"]["top1_agreement"] >= LLM_RECIPES[llm].min_top1
    pipe = Pipeline(path)
    try:
        result = pipe.generate([synthetic_photo(64, 64, seed=3)], "What is it?", GenerationParams(max_new_tokens=8,
                                                                                                 min_new_tokens=8))
    finally:
        pipe.close()
    assert len(result.tokens) == 8


def test_verify_refuses_a_silently_corrupted_pte(checkpoints, tmp_path, monkeypatch):
    """A quantization mechanic with a layout bug lowers without error; verification must refuse it."""
    import copy

    import torch

    from mmedge.export.exporter import ExportConfig, export_bundle
    from mmedge.quantize import executorch_quant

    real_int8 = executorch_quant.EXECUTORCH_RECIPES["int8"]

    def corrupted_int8(module):
        module = copy.deepcopy(module)
        with torch.no_grad():  # half of the first layer's output channels swapped: a plausible packing bug
            w = module.linear_1.weight
            half = w.shape[0] // 2
            w.copy_(torch.cat([w[half:], w[:half]]))
        return real_int8(module)

    monkeypatch.setitem(executorch_quant.EXECUTORCH_RECIPES, "int8", corrupted_int8)
    out = tmp_path / "bundle"
    with pytest.raises(BelowFloorError, match="projector: cosine"):
        export_bundle(ExportConfig(checkpoint=checkpoints("clip-llama-bpe"), output=out, projector_target="executorch",
                                   projector="int8"))
    assert not out.exists()


def test_unknown_target_is_refused_up_front(checkpoints, tmp_path):
    from mmedge.export.exporter import ExportConfig

    with pytest.raises(RecipeError, match=r"choose one of \['coreml', 'executorch', 'onnx'\]"):
        ExportConfig(checkpoint=checkpoints("clip-llama-bpe"), output=tmp_path / "b", encoder_target="tflite")


def test_altered_pte_is_caught_by_sha256(et_fp32, tmp_path):
    import shutil

    from mmedge.runtime.pipeline import Pipeline

    path, m = et_fp32
    copy_dir = tmp_path / "b"
    shutil.copytree(path, copy_dir)
    pte = copy_dir / m.parts["projector"].file
    data = bytearray(pte.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pte.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256 of projector.fp32.pte"):
        Pipeline(copy_dir)


@pytest.mark.parametrize("case", HOSTILE_CASES, ids=HOSTILE_IDS)
def test_damaged_pte_runs_or_is_refused_never_crashes(et_fp32, tmp_path, case):
    """A .pte changed after export with its hash rewritten reaches ExecuTorch's loader (with
    internal-consistency verification): it runs or is a named error, in its own process, never a crash."""
    proc = run_damaged_part(et_fp32[0], "projector", case, tmp_path)
    assert_ran_or_refused(proc, ("BackendError",))
    if case[0] == "truncate" and case[1] <= 0.5:
        assert proc.returncode == 2


def test_a_permuted_example_still_gives_a_program_for_contiguous_inputs(tmp_path):
    """A projector whose example features are a permuted view (a SigLIP encoder's output at 729
    tokens was one) must still take the contiguous arrays the runtimes pass: the exporter makes the
    example contiguous, or the program records a [0, 2, 1] dim order and XNNPACK refuses every run."""
    import torch
    from executorch.runtime import Runtime

    from mmedge.export.targets.executorch import ExecuTorchTarget

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(48, 40), torch.nn.GELU(), torch.nn.Linear(40, 40)).eval()
    permuted = torch.randn(2, 48, 29).transpose(1, 2)  # [2, 29, 48], not contiguous
    assert not permuted.is_contiguous()
    out = tmp_path / "projector.pte"
    ExecuTorchTarget().export(mlp, {"image_features": permuted}, "image_embeddings", "fp32", out, tmp_path)
    method = Runtime.get().load_program(str(out)).load_method("forward")
    for batch in (1, 2):
        x = torch.randn(batch, 29, 48)
        got = method.execute([x])[0]
        with torch.no_grad():
            assert torch.allclose(got, mlp(x), atol=1e-5)
