"""The `mmedge` command end to end, through real subprocesses."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

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
    for text in ("vision_encoder", "projector", "llm", "pixel_values", "tokens identical: 64/64", "<image>"):
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
    assert report["greedy_tokens_equal"] == report["greedy_tokens_total"] == 64
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
    out = tmp_path / "nested" / "bundle"
    proc = run("export", checkpoints("clip-llama-bpe"), "-o", out, "--encoder", "int8", "--llm", "Q8_0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[1/6] loading LlavaForConditionalGeneration" in proc.stderr  # progress is shown
    assert re.search(r"tokens identical: \d+/64", proc.stdout)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parts"]["vision_encoder"]["precision"] == "int8"
    assert manifest["parts"]["llm"]["details"]["tensor_types"].get("Q8_0", 0) > 0


def test_demo_keeps_everything_in_out(tmp_path):
    proc = run("demo", "--out", tmp_path / "demo", "--quiet", timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tokens identical: 64/64" in proc.stdout
    for name in ("checkpoint/config.json", "checkpoint/model.safetensors", "bundle-fp32/manifest.json",
                 "bundle-int8-q8/manifest.json", "demo.png"):
        assert (tmp_path / "demo" / name).is_file(), name


def test_export_refuses_a_part_below_its_floor(tmp_path, checkpoints):
    """siglip-qwen2-tied has weight scale 2 (very sensitive): int8 + Q4_0 measure below the
    floors (encoder cosine ~0.975 < 0.99, LLM top-1 ~0.41 < 0.6). Export must refuse it, leave
    nothing behind, and keep it only when asked, recording the verdict."""
    out = tmp_path / "b"
    args = ("export", checkpoints("siglip-qwen2-tied"), "-o", out, "--encoder", "int8", "--llm", "Q4_0", "--quiet")
    proc = run(*args)
    assert proc.returncode == 2
    assert "fell below the precision floor" in proc.stderr and "--allow-below-floor" in proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".mmedge-staging-*"))
    proc = run(*args, "--allow-below-floor")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "manifest.json").read_text())["verification"]
    assert report["passed"] is False and report["allow_below_floor"] is True
    assert report["vision_encoder"]["passed"] is False
    assert report["vision_encoder"]["cosine"] < report["vision_encoder"]["floor"]["min_cosine"]


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
