"""Prompts, images and parameters the runtime must refuse with a named error -- before llama.cpp,
which aborts the whole process on some misuse -- and the ones it must accept and answer the same."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmedge.errors import ImageError, PromptError
from mmedge.runtime.images import load_image
from mmedge.runtime.pipeline import GenerationParams
from mmedge.runtime.prompt import ImageRows, format_prompt

N_TOKENS = 12


def pattern_image(seed: int, size=(64, 48)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def image_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("images") / "pattern.png"
    pattern_image(1).save(path)
    return path


def greedy(pipeline, images, prompt, n=N_TOKENS, raw=False):
    return pipeline.generate(images, prompt, GenerationParams(max_new_tokens=n, min_new_tokens=n), raw_prompt=raw)


@pytest.fixture(scope="module")
def reference(pipeline, image_file):
    """Greedy tokens for one image, template placement, n_batch 512 (the fixture's pipeline)."""
    result = greedy(pipeline, [image_file], "What is in the picture?")
    assert len(result.tokens) == N_TOKENS
    return result


class LlamaCalled(AssertionError):
    pass


@pytest.fixture
def no_llama(pipeline, monkeypatch):
    """Fail if the pipeline reaches llama.cpp (or the image encoder): refusals must come first."""
    calls = []

    def guard(name):
        def fn(*args, **kwargs):
            calls.append(name)
            raise LlamaCalled(f"{name} was called")

        return fn

    for name in ("reset", "decode_tokens", "decode_embeddings"):
        monkeypatch.setattr(pipeline.llm, name, guard(f"llm.{name}"))
    monkeypatch.setattr(pipeline.encoder, "run", guard("encoder.run"))
    return calls


# -- image markers vs images ------------------------------------------------------------------
def test_two_markers_one_image(pipeline, image_file, no_llama):
    with pytest.raises(PromptError) as info:
        pipeline.generate([image_file], "<image> compare with <image>", GenerationParams(max_new_tokens=4))
    msg = str(info.value)
    assert "2 image marker(s) '<image>'" in msg and "1 image(s)" in msg
    assert "one marker per image, or none" in msg
    assert no_llama == []


def test_one_marker_no_image(pipeline, no_llama):
    with pytest.raises(PromptError) as info:
        pipeline.generate([], "<image>\nWhat is this?", GenerationParams(max_new_tokens=4))
    assert "1 image marker(s)" in str(info.value) and "0 image(s)" in str(info.value)
    assert no_llama == []


def test_raw_prompt_without_marker_for_an_image(pipeline, image_file, no_llama):
    with pytest.raises(PromptError) as info:
        pipeline.generate([image_file], "USER: What is this? ASSISTANT:", GenerationParams(max_new_tokens=4), raw_prompt=True)
    assert "a raw prompt needs one '<image>' per image: found 0, images 1" in str(info.value)
    assert "put one marker where each image goes" in str(info.value)
    assert no_llama == []


def test_marker_count_rules_in_format_prompt(pipeline):
    spec, slot = pipeline.manifest.prompt, pipeline.manifest.image
    with pytest.raises(PromptError, match=r"3 image marker\(s\).*2 image\(s\)"):
        format_prompt("<image><image><image>", 2, spec, slot)
    for n_markers in (0, 1, 3):
        with pytest.raises(PromptError) as info:
            format_prompt("<image> and " * n_markers, 2, spec, slot, raw=True)
        # A raw prompt has no template to place images: the advice must not be "use no markers".
        assert f"a raw prompt needs one '<image>' per image: found {n_markers}, images 2" in str(info.value)
        assert "drop the raw option" in str(info.value) and "or none" not in str(info.value)
    with pytest.raises(PromptError, match="the prompt must be text, got bytes"):
        format_prompt(b"<image>", 1, spec, slot)
    # Accepted: markers equal to images, raw or templated; a raw prompt is used as is.
    assert format_prompt("<image><image> same?", 2, spec, slot, raw=True) == "<image><image> same?"
    assert format_prompt("<image><image> same?", 2, spec, slot) == "USER: <image><image> same? ASSISTANT:"


# -- where the image goes without a marker -----------------------------------------------------
def test_template_places_the_image_first(pipeline):
    text = pipeline.format("What is in the picture?", 1)
    assert text.startswith("USER: <image>\n")
    assert text == "USER: <image>\nWhat is in the picture? ASSISTANT:"
    assert pipeline.format("Same?", 2) == "USER: <image>\n<image>\nSame? ASSISTANT:"
    assert pipeline.format("Hello", 0) == "USER: Hello ASSISTANT:"


def test_template_placement_equals_explicit_marker_and_raw(pipeline, image_file, reference):
    marker = greedy(pipeline, [image_file], "<image>\nWhat is in the picture?")
    raw = greedy(pipeline, [image_file], "USER: <image>\nWhat is in the picture? ASSISTANT:", raw=True)
    assert marker.prompt_tokens == reference.prompt_tokens == raw.prompt_tokens
    assert marker.tokens == reference.tokens
    assert raw.tokens == reference.tokens
    slot = pipeline.manifest.image
    plan = pipeline.plan(pipeline.format("What is in the picture?", 1), pipeline.prepare_images([load_image(image_file)]))
    assert [i for i in plan.items if isinstance(i, ImageRows)] == [ImageRows(0, slot.tokens_per_image)]
    assert isinstance(plan.items[1], ImageRows)  # right after "USER:" (BOS + "USER:" first)
    assert reference.stats.prompt_positions == len(reference.prompt_tokens) + slot.tokens_per_image


def test_the_image_actually_reaches_the_model(pipeline, image_file, reference):
    """Control for the equality above: another image gives other tokens, so equality means something."""
    other = greedy(pipeline, [pattern_image(7)], "What is in the picture?")
    assert other.prompt_tokens == reference.prompt_tokens
    assert other.tokens != reference.tokens


# -- prompts longer than the context: refused before llama.cpp ----------------------------------
def test_prompt_longer_than_the_context(pipeline, image_file, no_llama):
    n_ctx = pipeline.llm.n_ctx
    prompt = "tell me about the picture " * 400
    text = pipeline.format(prompt, 1)
    positions = pipeline.plan(text, pipeline.prepare_images([load_image(image_file)])).n_positions
    assert positions > n_ctx
    with pytest.raises(PromptError) as info:
        pipeline.generate([image_file], prompt, GenerationParams(max_new_tokens=4))
    msg = str(info.value)
    assert f"the prompt takes {positions} positions" in msg and f"the context holds {n_ctx}" in msg
    assert "shorten the prompt" in msg and "--ctx" in msg
    assert no_llama == []


def test_max_new_tokens_past_the_context(pipeline, image_file, no_llama, monkeypatch):
    n_ctx = pipeline.llm.n_ctx
    prompt = "What is in the picture?"
    positions = pipeline.plan(pipeline.format(prompt, 1), pipeline.prepare_images([load_image(image_file)])).n_positions
    with pytest.raises(PromptError, match=f"up to {n_ctx - positions + 1} new tokens are asked, but the context holds {n_ctx}"):
        pipeline.generate([image_file], prompt, GenerationParams(max_new_tokens=n_ctx - positions + 1))
    with pytest.raises(PromptError):
        pipeline.generate([image_file], prompt, GenerationParams(max_new_tokens=1 << 20))
    assert no_llama == []
    # Exactly filling the context is allowed: it gets past the check to llama.cpp (guarded here).
    with pytest.raises(LlamaCalled):
        pipeline.generate([image_file], prompt, GenerationParams(max_new_tokens=n_ctx - positions))


def test_pipeline_still_answers_after_refusals(pipeline, image_file, reference):
    for bad in (
        lambda: pipeline.generate([image_file], "x " * 5000, GenerationParams(max_new_tokens=4)),
        lambda: pipeline.generate([image_file], "<image><image>", GenerationParams(max_new_tokens=4)),
        lambda: pipeline.generate([image_file], "hi", GenerationParams(max_new_tokens=2000)),
    ):
        with pytest.raises(PromptError):
            bad()
    again = greedy(pipeline, [image_file], "What is in the picture?")
    assert again.tokens == reference.tokens


# -- bad images ---------------------------------------------------------------------------------
def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make,fragment",
    [
        (lambda d: _write(d / "notes.png", b"this is a text file, not a PNG\n"), "not an image file PIL can read"),
        (lambda d: _write(d / "empty.jpg", b""), "not an image file PIL can read"),
        (lambda d: d / "missing.png", "no such file"),
        (lambda d: d, "is a folder"),
    ],
    ids=["text-as-png", "empty-file", "missing", "folder"],
)
def test_file_that_is_not_an_image(pipeline, tmp_path, no_llama, make, fragment):
    path = make(tmp_path)
    with pytest.raises(ImageError) as info:
        pipeline.generate([path], "What is this?", GenerationParams(max_new_tokens=4))
    assert fragment in str(info.value) and str(path) in str(info.value)
    assert no_llama == []


def test_truncated_image_file(pipeline, tmp_path, no_llama):
    path = tmp_path / "cut.png"
    pattern_image(3).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="damaged or truncated"):
        pipeline.generate([path], "What is this?", GenerationParams(max_new_tokens=4))
    assert no_llama == []


@pytest.mark.parametrize("as_file", [False, True], ids=["pil", "file"])
@pytest.mark.parametrize("size", [(1, 1), (1, 200), (7, 64)])
def test_image_too_small(pipeline, tmp_path, no_llama, as_file, size):
    image = Image.new("RGB", size, (10, 200, 30))
    if as_file:
        image.save(tmp_path / "tiny.png")
        image = tmp_path / "tiny.png"
    with pytest.raises(ImageError) as info:
        pipeline.generate([image], "What is this?", GenerationParams(max_new_tokens=4))
    assert f"{size[0]}x{size[1]} pixels is too small" in str(info.value)
    assert "at least 8 pixels on each side" in str(info.value)
    assert no_llama == []


def test_image_too_large_is_refused_from_its_header(pipeline, tmp_path, no_llama):
    path = tmp_path / "huge.png"
    Image.new("1", (9000, 8000)).save(path)  # 72 MP, a few kB on disk
    with pytest.raises(ImageError, match="9000x8000 = 72000000 pixels exceeds the limit"):
        pipeline.generate([path], "What is this?", GenerationParams(max_new_tokens=4))
    assert no_llama == []


def test_smallest_image_is_accepted(pipeline):
    result = greedy(pipeline, [Image.new("RGB", (8, 8), (1, 2, 3))], "What is this?", n=2)
    assert len(result.tokens) == 2


# -- in a child process: real llama.cpp, near its abort conditions ---------------------------------
CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from mmedge.errors import PromptError
    from mmedge.runtime.pipeline import GenerationParams, Pipeline, RuntimeOptions

    bundle, image, n_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
    out = {}

    def refused(name, fn):
        try:
            fn()
            out[name] = "accepted"
        except PromptError as e:
            out[name] = "PromptError: " + str(e)

    # threads=1: on a shared, busy machine llama.cpp's spinning worker threads cost seconds per call.
    small = Pipeline(bundle, RuntimeOptions(exact=True, n_ctx=128, threads=1))
    out["small_n_ctx"] = small.llm.n_ctx
    refused("long_prompt", lambda: small.generate([image], "describe it in detail " * 200, GenerationParams(max_new_tokens=4)))
    refused("max_tokens_past_ctx", lambda: small.generate([image], "hi", GenerationParams(max_new_tokens=small.llm.n_ctx)))
    # The LlamaModel guard itself, below the pipeline's check: too many tokens / embedding rows.
    small.llm.reset()
    refused("raw_tokens_past_ctx", lambda: small.llm.decode_tokens([5] * (small.llm.n_ctx + 1)))
    refused("raw_embeddings_past_ctx", lambda: small.llm.decode_embeddings(np.zeros((small.llm.n_ctx + 1, small.llm.n_embd), np.float32)))
    # Still usable after the refusals.
    p = GenerationParams(max_new_tokens=n_tokens, min_new_tokens=n_tokens)
    out["small_after_refusals"] = small.generate([image], "What is in the picture?", p).tokens
    small.close()

    for n_batch in (1, 8, 35):
        pipe = Pipeline(bundle, RuntimeOptions(exact=True, n_ctx=1024, n_batch=n_batch, threads=1))
        out[f"n_batch_{n_batch}"] = {
            "llm_n_batch": pipe.llm.n_batch,
            "tokens": pipe.generate([image], "What is in the picture?", p).tokens,
            "two_images": pipe.generate([image, image], "<image> and <image>: same?", p).tokens,
        }
        pipe.close()
    print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def child_run(fp32_bundle, image_file, tmp_path_factory):
    script = tmp_path_factory.mktemp("child") / "child.py"
    script.write_text(CHILD)
    proc = subprocess.run([sys.executable, str(script), str(fp32_bundle), str(image_file), str(N_TOKENS)],
                          capture_output=True, text=True, timeout=300)
    return proc


def child_result(proc) -> dict:
    # A llama.cpp abort shows as a negative return code (SIGABRT) and no RESULT line.
    assert proc.returncode == 0, f"child exited with {proc.returncode}: {proc.stderr[-3000:]}"
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert len(lines) == 1, proc.stdout[-2000:]
    return json.loads(lines[0][len("RESULT "):])


def test_child_refuses_overlong_sequences_without_aborting(child_run, reference):
    out = child_result(child_run)
    n_ctx = out["small_n_ctx"]
    assert 128 <= n_ctx < 1024
    for name in ("long_prompt", "max_tokens_past_ctx"):
        assert out[name].startswith("PromptError: the prompt takes"), out[name]
        assert f"the context holds {n_ctx}" in out[name]
    for name in ("raw_tokens_past_ctx", "raw_embeddings_past_ctx"):
        assert out[name] == (
            f"PromptError: the sequence needs {n_ctx + 1} positions but the context holds {n_ctx}; "
            "shorten the prompt, use fewer images, lower --max-tokens or raise --ctx"
        )
    assert out["small_after_refusals"] == reference.tokens


@pytest.fixture(scope="module")
def reference_two_images(pipeline, image_file):
    return greedy(pipeline, [image_file, image_file], "<image> and <image>: same?")


@pytest.mark.parametrize("n_batch", [1, 8, 35])
def test_small_n_batch_gives_the_same_greedy_tokens(child_run, pipeline, reference, reference_two_images, n_batch):
    out = child_result(child_run)[f"n_batch_{n_batch}"]
    tokens_per_image = pipeline.manifest.image.tokens_per_image
    assert out["llm_n_batch"] == n_batch < tokens_per_image  # the image really is split across batches
    assert pipeline.llm.n_batch == 512
    assert out["tokens"] == reference.tokens
    assert len(reference_two_images.tokens) == N_TOKENS
    assert out["two_images"] == reference_two_images.tokens
