"""The `mmedge` command end to end, through real subprocesses."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from ..verification_checks import assert_end_to_end_matches

MMEDGE = [sys.executable, "-m", "mmedge.cli"]


def run(*args, timeout=600):
    return subprocess.run([*MMEDGE, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_families_lists_llava():
    proc = run("families")
    assert proc.returncode == 0, proc.stderr
    assert "llava" in proc.stdout and "LlavaForConditionalGeneration" in proc.stdout
    assert "CLIP" in proc.stdout and "qwen2" in proc.stdout


def test_inspect_shows_parts_and_verification(fp32_bundle):
    proc = run("inspect", fp32_bundle)
    assert proc.returncode == 0, proc.stderr
    equal = json.loads(run("inspect", fp32_bundle, "--json").stdout)["verification"]["greedy_tokens_equal"]
    for text in ("vision_encoder", "projector", "llm", "pixel_values", f"tokens identical: {equal}/64", "<image>",
                 "verified on"):
        assert text in proc.stdout
    as_json = json.loads(run("inspect", fp32_bundle, "--json").stdout)
    assert as_json["format"] == "mmedge-bundle" and as_json["format_version"] == 1


def test_run_streams_the_pipeline_text(fp32_bundle, pipeline, tmp_path):
    from mmedge.export.verify_inputs import synthetic_photo
    from mmedge.runtime.pipeline import GenerationParams

    image = tmp_path / "x.png"
    synthetic_photo(120, 90, seed=11).save(image)
    proc = run("run", fp32_bundle, "--image", image, "--prompt", "What is this?", "--max-tokens", "16", "--exact", "--stats")
    assert proc.returncode == 0, proc.stderr
    expected = pipeline.generate([image], "What is this?", GenerationParams(max_new_tokens=16))
    assert proc.stdout == expected.text + "\n"
    assert re.search(r"TTFT [\d.]+ ms \| decode \d+ tok", proc.stderr)


def test_cli_runs_a_tiled_bundle(bundles, tmp_path):
    """A family with tiles goes through the same commands: inspect names the layout, run streams
    the pipeline's greedy text for an image that becomes several tiles."""
    from mmedge.export.verify_inputs import synthetic_photo
    from mmedge.runtime.pipeline import GenerationParams, Pipeline, RuntimeOptions

    bundle = bundles("smolvlm-llama")[0]
    shown = run("inspect", bundle).stdout
    assert "layout idefics3-tiles (longest_edge=128, tile_size=32, split=True" in shown
    image = tmp_path / "wide.png"
    synthetic_photo(131, 77, seed=4).save(image)
    proc = run("run", bundle, "--image", image, "--prompt", "Describe it.", "--max-tokens", "12", "--exact", "--ctx", "2048")
    assert proc.returncode == 0, proc.stderr
    pipe = Pipeline(bundle, RuntimeOptions(exact=True, n_ctx=2048))
    try:
        expected = pipe.generate([image], "Describe it.", GenerationParams(max_new_tokens=12))
    finally:
        pipe.close()
    assert proc.stdout == expected.text + "\n" and expected.tokens


def test_run_seeded_sampling_is_reproducible(fp32_bundle, tmp_path):
    from mmedge.export.verify_inputs import synthetic_photo

    image = tmp_path / "x.png"
    synthetic_photo(64, 64, seed=12).save(image)
    args = ("run", fp32_bundle, "--image", image, "--prompt", "Hi", "--max-tokens", "12", "--temperature", "0.9", "--top-k", "40")
    a, b, c = run(*args, "--seed", "1"), run(*args, "--seed", "1"), run(*args, "--seed", "2")
    assert a.returncode == b.returncode == c.returncode == 0
    assert a.stdout == b.stdout and a.stdout != c.stdout


def test_verify_json_reports_every_part(fp32_bundle, checkpoints):
    proc = run("verify", fp32_bundle, "--reference", checkpoints("clip-llama-bpe"), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert_end_to_end_matches(report)
    for part in ("vision_encoder", "projector", "llm"):
        assert {"cosine", "max_abs_diff"} <= set(report[part])
    assert report["vision_encoder"]["cosine"] > 0.99999
    assert report["preprocess"]["max_abs_diff"] == 0.0


def test_verify_against_the_wrong_checkpoint_fails_loudly(fp32_bundle, checkpoints):
    """A bundle checked against another model must not pass: the check can fail."""
    proc = run("verify", fp32_bundle, "--reference", checkpoints("siglip-qwen2-tied"), "--json")
    assert proc.returncode in (1, 2)
    if proc.returncode == 1:
        report = json.loads(proc.stdout)
        assert report["passed"] is False


def test_export_cli_with_quantized_choices(tmp_path, checkpoints):
    """The choices reach the parts, and the printed verdict is the manifest's. (The tiny random model's
    Q8_0 top-1 sits near its floor, on one side on one CPU and on the other elsewhere: the bundle is
    kept either way, and the verdict must follow the numbers.)"""
    from mmedge.quantize.recipes import LLM_RECIPES, TENSOR_RECIPES

    out = tmp_path / "nested" / "bundle"
    proc = run("export", checkpoints("clip-llama-bpe"), "-o", out, "--encoder", "int8", "--llm", "Q8_0",
               "--allow-below-floor")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[1/6] loading LlavaForConditionalGeneration" in proc.stderr  # progress is shown
    assert re.search(r"tokens identical: \d+/64", proc.stdout)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parts"]["vision_encoder"]["precision"] == "int8"
    assert manifest["parts"]["llm"]["details"]["tensor_types"].get("Q8_0", 0) > 0
    v = manifest["verification"]
    encoder_ok = v["vision_encoder"]["cosine"] >= TENSOR_RECIPES["int8"].min_cosine
    llm_ok = v["llm"]["top1_agreement"] >= LLM_RECIPES["Q8_0"].min_top1
    assert (v["vision_encoder"]["passed"], v["llm"]["passed"]) == (encoder_ok, llm_ok)
    assert v["passed"] == (encoder_ok and llm_ok and v["projector"]["passed"])
    assert ("BELOW FLOOR" in proc.stdout) == (not v["passed"])


def test_demo_keeps_everything_in_out(tmp_path):
    proc = run("demo", "--out", tmp_path / "demo", "--quiet", timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fp32 = json.loads((tmp_path / "demo" / "bundle-fp32" / "manifest.json").read_text())["verification"]
    assert_end_to_end_matches(fp32)
    assert f"tokens identical: {fp32['greedy_tokens_equal']}/64" in proc.stdout
    quantized = json.loads((tmp_path / "demo" / "bundle-int8-q8" / "manifest.json").read_text())["verification"]
    assert ("below the precision floor" in proc.stdout) == (not quantized["passed"])
    for name in ("checkpoint/config.json", "checkpoint/model.safetensors", "bundle-fp32/manifest.json",
                 "bundle-int8-q8/manifest.json", "demo.png"):
        assert (tmp_path / "demo" / name).is_file(), name


# The CLI with the ONNX int8 recipe damaged: before quantizing, half the output columns of the
# encoder's first large MatMul weight are swapped (a plausible layout bug that still runs). Its
# cosine falls far below any floor on every CPU, unlike a model that is merely hard to quantize,
# whose verdict would depend on the CPU's int8 kernels.
DAMAGED_INT8_CLI = """
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from mmedge.quantize import onnx_quant

real_int8 = onnx_quant.ONNX_RECIPES["int8"]


def damaged_int8(src, dst, calibration=None):
    model = onnx.load(str(src))
    weight = next(t for t in model.graph.initializer if len(t.dims) == 2 and t.dims[0] * t.dims[1] >= 1024)
    w = numpy_helper.to_array(weight)
    half = w.shape[1] // 2
    weight.CopyFrom(numpy_helper.from_array(np.concatenate([w[:, half:], w[:, :half]], axis=1), weight.name))
    damaged = Path(dst).with_suffix(".damaged.onnx")
    onnx.save(model, str(damaged))
    try:
        return real_int8(damaged, dst, calibration)
    finally:
        damaged.unlink()


onnx_quant.ONNX_RECIPES["int8"] = damaged_int8
from mmedge.cli import main

sys.exit(main(sys.argv[1:]))
"""


def test_export_refuses_a_part_below_its_floor(tmp_path, checkpoints):
    """An int8 encoder with a layout bug measures far below its floor: export refuses it with exit 2,
    names the flag that keeps it, leaves nothing behind, and keeps it only when asked, recording
    the verdict (the part's cosine below its floor, the bundle not passed)."""
    out = tmp_path / "b"
    args = ("export", checkpoints("clip-llama-bpe"), "-o", out, "--encoder", "int8", "--quiet")

    def damaged_cli(*extra):
        return subprocess.run([sys.executable, "-c", DAMAGED_INT8_CLI, *map(str, args), *extra], capture_output=True,
                              text=True, timeout=600)

    proc = damaged_cli()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "fell below the precision floor" in proc.stderr and "--allow-below-floor" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".mmedge-staging-*"))
    proc = damaged_cli("--allow-below-floor")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "manifest.json").read_text())["verification"]
    assert report["passed"] is False and report["allow_below_floor"] is True
    encoder = report["vision_encoder"]
    assert encoder["passed"] is False and encoder["cosine"] < encoder["floor"]["min_cosine"] - 0.05, encoder
    assert report["projector"]["passed"] is True and report["llm"]["passed"] is True  # only the damaged part
    # The CPU the numbers were measured on is recorded beside them.
    from mmedge.cpu import cpu_facts

    assert report["machine"]["int8_dot"] == cpu_facts().int8_dot and report["machine"]["simd"] == list(cpu_facts().simd)


@pytest.mark.parametrize("args, message", [
    (("verify", "{bundle}", "--reference", "{ckpt}", "--tokens", "0"), "--tokens must be in 1 .. 1024"),
    (("verify", "{bundle}", "--reference", "{ckpt}", "--threads", "-2"), "--threads must be in 0 .. 1024"),
    (("export", "{ckpt}", "-o", "{out}", "--threads", "-1"), "--threads must be in 0 .. 1024"),
])
def test_bad_numbers_are_refused_before_work(args, message, fp32_bundle, checkpoints, tmp_path):
    fill = {"bundle": fp32_bundle, "ckpt": checkpoints("clip-llama-bpe"), "out": tmp_path / "b"}
    proc = run(*(a.format(**fill) for a in args), timeout=120)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "b").exists()
