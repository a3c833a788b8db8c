"""The native runtime gives the Python runtime's greedy tokens and text for the same ExecuTorch +
GGUF bundle: through the C ABI (ctypes) and through `mmedge-run` (a subprocess reading PNG and JPEG
files), with images placed by the chat frame or by markers, text only, a raw prompt, an int8
encoder with a Q8_0 LLM; the token callback stops a generation; seeded sampling draws Python's
tokens."""
from __future__ import annotations

import json
import struct
import subprocess
import zlib

import numpy as np
import pytest
from PIL import Image

from mmedge.runtime.pipeline import GenerationParams, Pipeline, RuntimeOptions

from .native_helpers import CLI, require_build, rgb

N = 24
CASES = {
    "frame-places-the-image": (["astronaut"], "What is in this picture?"),
    "markers": (["coffee", "rocket"], "Compare <image> and <image>."),
    "text-only": ([], "Tell me a story about a cat."),
    "marker-first": (["chelsea"], "<image>Describe it in detail."),
}


@pytest.fixture(scope="module")
def python_pipeline(et_bundle):
    pipe = Pipeline(et_bundle, RuntimeOptions(exact=True, threads=1, n_ctx=1024))
    yield pipe
    pipe.close()


@pytest.fixture(scope="module")
def native_ctx(native, et_bundle):
    with native.open(et_bundle, exact=1, n_threads=1, n_ctx=1024) as ctx:
        yield ctx


def _python(pipe, images, prompt, raw=False):
    return pipe.generate(images, prompt, GenerationParams(max_new_tokens=N, min_new_tokens=N), raw_prompt=raw)


@pytest.mark.parametrize("case", CASES)
def test_greedy_tokens_and_text_equal_the_python_runtimes(python_pipeline, native_ctx, photos, case):
    names, prompt = CASES[case]
    images = [photos[n] for n in names]
    expected = _python(python_pipeline, images, prompt)
    got = native_ctx.generate([rgb(im) for im in images], prompt, max_new_tokens=N, min_new_tokens=N)
    assert got.tokens == expected.tokens and len(got.tokens) == N
    assert got.text == expected.text
    assert got.stats["prompt_positions"] == expected.stats.prompt_positions
    timed = ("preprocess_s", "encode_s", "project_s") if images else ()
    assert all(got.stats[k] > 0 for k in ("load_s", "prefill_s", "first_token_s", *timed))


def test_the_answer_depends_on_the_image(native_ctx, photos):
    a, b = (native_ctx.generate([rgb(photos[n])], "What is this?", max_new_tokens=N, min_new_tokens=N).tokens
            for n in ("astronaut", "camera"))
    assert a != b


def test_a_raw_prompt_is_used_as_is(python_pipeline, native_ctx, photos):
    prompt = "USER: <image>\nWhat is it? ASSISTANT: It is"
    expected = _python(python_pipeline, [photos["rocket"]], prompt, raw=True)
    got = native_ctx.generate([rgb(photos["rocket"])], prompt, max_new_tokens=N, min_new_tokens=N, raw_prompt=1)
    assert got.tokens == expected.tokens


def test_the_callback_stops_and_keeps_the_tokens_so_far(native_ctx, photos):
    full = native_ctx.generate([rgb(photos["coffee"])], "What is this?", max_new_tokens=N, min_new_tokens=N)
    stopped = native_ctx.generate([rgb(photos["coffee"])], "What is this?", stop_after=5, max_new_tokens=N, min_new_tokens=N)
    assert stopped.status == 10 and stopped.stats["stopped"] == 1  # MMEDGE_ERR_STOPPED
    assert stopped.tokens == full.tokens[:5]


def test_mmedge_stop_from_another_thread_stops_a_long_generation(native_ctx, photos):
    import threading

    first_token, stop_called = threading.Event(), threading.Event()
    results = {}

    def on_piece():  # the decode is running: hold it until mmedge_stop was called (no race with speed)
        first_token.set()
        assert stop_called.wait(60)

    def generate():
        results["r"] = native_ctx.generate([rgb(photos["coffee"])], "What is this?", max_new_tokens=900,
                                           min_new_tokens=900, on_piece=on_piece)

    worker = threading.Thread(target=generate)
    worker.start()
    assert first_token.wait(60)
    native_ctx.stop()
    stop_called.set()
    worker.join(60)
    stopped = results["r"]
    assert stopped.status == 10 and stopped.stats["stopped"] == 1 and 0 < len(stopped.tokens) < 900
    full = native_ctx.generate([rgb(photos["coffee"])], "What is this?", max_new_tokens=len(stopped.tokens),
                               min_new_tokens=len(stopped.tokens))
    assert full.tokens == stopped.tokens and full.status == 0  # the next call is unaffected


SAMPLING = {  # (temperature, top_k, top_p, seed)
    "t0.9-k50-p0.95-seed7": (0.9, 50, 0.95, 7),
    "t1.3-seed0": (1.3, 0, 1.0, 0),
    "t0.7-p0.8-seed-2^40": (0.7, 0, 0.8, 2**40 + 3),
    "t2.0-k5-seed-2^63-1": (2.0, 5, 1.0, 2**63 - 1),
}


@pytest.mark.parametrize("case", SAMPLING)
def test_seeded_sampling_draws_the_python_runtimes_tokens(python_pipeline, native_ctx, photos, case):
    """numpy's PCG64 stream, SeedSequence seeding and pairwise sums, ported: the same seed draws the
    same tokens in both runtimes (seeds above 2^32 use both entropy words)."""
    from mmedge.runtime.sampling import SamplingParams

    temperature, top_k, top_p, seed = SAMPLING[case]
    image = photos["coffee"]
    sampling = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    expected = python_pipeline.generate([image], "What is this?",
                                        GenerationParams(max_new_tokens=N, min_new_tokens=N, sampling=sampling))
    got = native_ctx.generate([rgb(image)], "What is this?", max_new_tokens=N, min_new_tokens=N, temperature=temperature,
                              top_k=top_k, top_p=top_p, seed=seed)
    greedy = _python(python_pipeline, [image], "What is this?").tokens
    assert got.tokens == expected.tokens and got.tokens != greedy
    assert got.text == expected.text


def test_other_seeds_draw_other_tokens(native_ctx, photos):
    def draw(seed):
        return native_ctx.generate([rgb(photos["coffee"])], "What is this?", max_new_tokens=N, min_new_tokens=N,
                                   temperature=0.9, top_p=0.95, top_k=50, seed=seed).tokens

    assert draw(7) == draw(7) and draw(7) != draw(8)


def test_an_int8_encoder_with_a_q8_0_llm_matches_too(native, bundles_with_targets, photos):
    bundle = bundles_with_targets("clip-llama-bpe", ("executorch", "int8"), ("executorch", "fp32"), "Q8_0",
                                  allow_below_floor=True)[0]
    pipe = Pipeline(bundle, RuntimeOptions(threads=1, n_ctx=1024))
    try:
        expected = pipe.generate([photos["chelsea"]], "Describe this image.", GenerationParams(max_new_tokens=N)).tokens
    finally:
        pipe.close()
    with native.open(bundle, n_threads=1, n_ctx=1024) as ctx:
        assert ctx.generate([rgb(photos["chelsea"])], "Describe this image.", max_new_tokens=N).tokens == expected


def test_the_cli_reads_png_and_jpeg_and_gives_the_same_tokens(python_pipeline, et_bundle, photos, tmp_path):
    files = [tmp_path / "a.png", tmp_path / "b.jpg"]
    photos["astronaut"].save(files[0])
    photos["coffee"].save(files[1], quality=90)
    prompt = "Compare <image> and <image>."
    expected = _python(python_pipeline, [Image.open(f) for f in files], prompt)
    proc = subprocess.run([str(require_build(CLI)), str(et_bundle), "--image", str(files[0]), "--image", str(files[1]),
                           "--prompt", prompt, "--max-tokens", str(N), "--min-tokens", str(N), "--exact", "--threads", "1",
                           "--ctx", "1024", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["tokens"] == expected.tokens and out["text"] == expected.text
    assert out["stats"]["prompt_positions"] == expected.stats.prompt_positions


def _png_modes(photo) -> dict:
    """The photo as PNGs of the modes people save: alpha that varies across the image (RGBA, LA),
    a palette with a transparent entry, grey, and 16-bit grey."""
    rgb = photo.convert("RGB").resize((96, 64))
    alpha = Image.linear_gradient("L").resize(rgb.size)  # 0 at the top to 255 at the bottom
    rgba = rgb.copy()
    rgba.putalpha(alpha)
    la = rgb.convert("L")
    la.putalpha(alpha)
    palette = rgb.quantize(16)
    palette.info["transparency"] = 3
    return {"rgba": rgba, "la": la, "palette-transparent": palette, "grey": rgb.convert("L"),
            "grey-16bit": Image.fromarray((np.asarray(rgb.convert("L"), dtype=np.uint16) * 3).astype(np.uint16))}


def _png_16bit_rgb(photo) -> bytes:
    """A 16-bit RGB PNG (Pillow writes none): Pillow reads it back keeping each sample's high byte."""
    pixels = np.asarray(photo.convert("RGB").resize((96, 64)), dtype=np.uint16) * 257 + 100
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in pixels)
    return _png_chunks(96, 64, 16, 2, zlib.compress(rows))


def _png_chunks(width, height, depth, colour, idat, extra=b"") -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)) + extra
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def _png_with_gamma(photo) -> bytes:
    """An 8-bit RGB PNG with a gAMA chunk of 1/1.0 (linear): Pillow ignores it, libpng's simplified API would not."""
    pixels = np.asarray(photo.convert("RGB").resize((96, 64)), dtype=np.uint8)
    rows = b"".join(b"\0" + row.tobytes() for row in pixels)
    gamma = struct.pack(">I", 4) + b"gAMA" + struct.pack(">I", 100000)
    gamma += struct.pack(">I", zlib.crc32(b"gAMA" + struct.pack(">I", 100000)))
    return _png_chunks(96, 64, 8, 2, zlib.compress(rows), gamma)


@pytest.mark.parametrize("mode", ["rgba", "la", "palette-transparent", "grey", "grey-16bit", "rgb-16bit", "gamma"])
def test_the_cli_reads_pngs_as_the_python_runtime_does(python_pipeline, et_bundle, photos, tmp_path, mode):
    """Alpha is composited onto white with Pillow's integer arithmetic, as transformers' convert_to_rgb
    (which the Python runtime follows) does; palettes and grey expand as Pillow expands them; 16-bit
    samples keep their high byte (16-bit grey clips at 255, Pillow's rule); a gAMA chunk is ignored."""
    path = tmp_path / f"{mode}.png"
    if mode == "rgb-16bit":
        path.write_bytes(_png_16bit_rgb(photos["astronaut"]))
    elif mode == "gamma":
        path.write_bytes(_png_with_gamma(photos["astronaut"]))
    else:
        _png_modes(photos["astronaut"])[mode].save(path)
    expected = _python(python_pipeline, [str(path)], "What is this?")
    proc = subprocess.run([str(require_build(CLI)), str(et_bundle), "--image", str(path), "--prompt", "What is this?",
                           "--max-tokens", str(N), "--min-tokens", str(N), "--exact", "--threads", "1", "--ctx", "1024",
                           "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tokens"] == expected.tokens
