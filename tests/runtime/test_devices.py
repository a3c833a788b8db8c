"""Placement: every path this machine can run for real (CPU, auto), and the fallback/refusal
paths by asking for devices whose providers are absent here."""
from __future__ import annotations

import subprocess
import sys

import pytest

from mmedge.errors import DeviceError
from mmedge.runtime.devices import place_llm, place_onnx, place_pte


def test_cpu_and_auto_place_every_part_on_the_cpu(fp32_bundle):
    from mmedge.runtime.pipeline import Pipeline, RuntimeOptions

    for device in ("cpu", "auto"):
        pipe = Pipeline(fp32_bundle, RuntimeOptions(device=device, n_ctx=512))
        try:
            assert {r: p.provider for r, p in pipe.placements.items()} == {
                "vision_encoder": "CPUExecutionProvider", "projector": "CPUExecutionProvider", "llm": "llama.cpp CPU"}
            assert pipe.placement_notes == []
            assert pipe.encoder.session.get_providers() == ["CPUExecutionProvider"]
        finally:
            pipe.close()


@pytest.mark.parametrize("device", ["gpu", "npu"])
def test_absent_device_falls_back_with_a_note_and_runs(fp32_bundle, device):
    from mmedge.export.verify_inputs import synthetic_photo
    from mmedge.runtime.pipeline import GenerationParams, Pipeline, RuntimeOptions

    pipe = Pipeline(fp32_bundle, RuntimeOptions(device=device, n_ctx=512))
    try:
        assert len(pipe.placement_notes) == 3 and all(f"no {device} provider present" in n for n in pipe.placement_notes)
        result = pipe.generate([synthetic_photo(64, 64, seed=1)], "Hi", GenerationParams(max_new_tokens=4, min_new_tokens=4))
        assert result.stats.providers["vision_encoder"] == "CPUExecutionProvider"
        assert result.stats.providers["llm"] == "llama.cpp CPU" and len(result.tokens) == 4
    finally:
        pipe.close()


def test_strict_refuses_an_absent_device(fp32_bundle):
    from mmedge.runtime.pipeline import Pipeline, RuntimeOptions

    with pytest.raises(DeviceError, match="--device gpu asked for.*drop --strict"):
        Pipeline(fp32_bundle, RuntimeOptions(device="gpu", strict=True))


def test_unknown_device_name():
    from mmedge.runtime.pipeline import RuntimeOptions

    with pytest.raises(DeviceError, match=r"choose one of \['cpu', 'gpu', 'npu', 'auto'\]"):
        RuntimeOptions(device="tpu")


def test_provider_tables_pick_the_best_present():
    """Providers this machine lacks, offered as present, are chosen in the documented order."""
    assert place_onnx("x", "npu", False, ["QNNExecutionProvider", "CPUExecutionProvider"]).provider == "QNNExecutionProvider"
    assert place_onnx("x", "auto", False, ["CUDAExecutionProvider", "CPUExecutionProvider"]).provider == "CUDAExecutionProvider"
    auto = place_onnx("x", "auto", False, ["CUDAExecutionProvider", "NnapiExecutionProvider", "CPUExecutionProvider"])
    assert (auto.device, auto.provider) == ("npu", "NnapiExecutionProvider")
    assert place_pte("x", "cpu", True).provider == "ExecuTorch XnnpackBackend"
    assert place_pte("x", "npu", False).note.startswith("x: no npu provider present")
    assert place_llm("gpu", True, gpu_offload=True) == (place_llm("gpu", False, True)[0], 999)
    with pytest.raises(DeviceError, match="no NPU backend"):
        place_llm("npu", True, gpu_offload=True)


def test_cli_run_reports_fallback_and_where_parts_ran(fp32_bundle, tmp_path):
    from mmedge.export.verify_inputs import synthetic_photo

    image = tmp_path / "x.png"
    synthetic_photo(64, 64, seed=2).save(image)
    base = [sys.executable, "-m", "mmedge.cli", "run", str(fp32_bundle), "--image", str(image), "--prompt", "Hi",
            "--max-tokens", "4", "--stats"]
    proc = subprocess.run([*base, "--device", "npu"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("warning:") == 3
    assert "[ran on: vision_encoder CPUExecutionProvider, projector CPUExecutionProvider, llm llama.cpp CPU]" in proc.stderr
    proc = subprocess.run([*base, "--device", "npu", "--strict"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "error:" in proc.stderr and "Traceback" not in proc.stderr
