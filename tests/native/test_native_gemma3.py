"""Gemma 3 natively: the 'single-wrapped' layout (each marker becomes <start_of_image>, the image
tokens and <end_of_image>), each image run decoded both ways in one batch ('bidirectional-image'),
and a chat template that trims the user text (`prompt.single_turn.strip`, Python's str.strip).
Greedy and seeded tokens equal the Python runtime's for chat prompts with ASCII and Unicode
whitespace around them, inline markers, two images, text only, a raw prompt; decoding the image
runs causally instead changes the tokens (in both runtimes alike), so the mode is exercised; an
image run longer than the batch is refused by name."""
from __future__ import annotations

import json
import shutil

import pytest

from mmedge.runtime.pipeline import GenerationParams, Pipeline, RuntimeOptions
from mmedge.runtime.sampling import SamplingParams

from .native_helpers import binding, rgb

N = 24
CASES = {  # (photos, prompt, raw)
    "chat-one-image-spaces": (["astronaut"], "  What is in this picture?\n", False),
    "chat-unicode-whitespace": (["coffee"], "\u3000Describe it.\u2028\u00a0", False),
    "chat-markers-two-images": (["coffee", "rocket"], "Compare <start_of_image> and <start_of_image>. ", False),
    "chat-two-images-placed": (["chelsea", "camera"], "Two pictures: what differs?", False),
    "chat-text-only": ([], "Tell me a story about a cat.", False),
    "raw": (["astronaut"], "<start_of_turn>user\n<start_of_image>What is this?<end_of_turn>\n<start_of_turn>model\n", True),
}


@pytest.fixture(scope="module")
def gemma3_bundle(bundles_with_targets):
    return bundles_with_targets("gemma3-siglip", ("executorch", "fp32"), ("executorch", "fp32"), "F32")[0]


@pytest.fixture(scope="module")
def python_pipeline(gemma3_bundle):
    pipe = Pipeline(gemma3_bundle, RuntimeOptions(exact=True, threads=1, n_ctx=1024))
    yield pipe
    pipe.close()


@pytest.fixture(scope="module")
def native_ctx(native, gemma3_bundle):
    with native.open(gemma3_bundle, exact=1, n_threads=1, n_ctx=1024) as ctx:
        yield ctx


def test_the_bundle_is_what_this_file_tests(gemma3_bundle):
    m = json.loads((gemma3_bundle / "manifest.json").read_text())
    assert m["image"]["layout"]["kind"] == "single-wrapped" and m["image"]["attention"] == "bidirectional-image"
    assert m["prompt"]["single_turn"]["strip"] is True


@pytest.mark.parametrize("case", CASES)
def test_greedy_tokens_equal_the_python_runtimes(python_pipeline, native_ctx, photos, case):
    names, prompt, raw = CASES[case]
    images = [photos[n] for n in names]
    expected = python_pipeline.generate(images, prompt, GenerationParams(max_new_tokens=N, min_new_tokens=N), raw_prompt=raw)
    got = native_ctx.generate([rgb(im) for im in images], prompt, max_new_tokens=N, min_new_tokens=N, raw_prompt=int(raw))
    assert got.tokens == expected.tokens and len(got.tokens) == N
    assert got.text == expected.text and got.stats["prompt_positions"] == expected.stats.prompt_positions


def _sampled(pipe, ctx, images, prompt, seed=11):
    sampling = SamplingParams(temperature=1.5, seed=seed)
    py = pipe.generate(images, prompt, GenerationParams(max_new_tokens=N, min_new_tokens=N, sampling=sampling)).tokens
    nat = ctx.generate([rgb(im) for im in images], prompt, max_new_tokens=N, min_new_tokens=N, temperature=1.5,
                       seed=seed).tokens
    return py, nat


def test_decoding_image_runs_causally_instead_changes_the_tokens(python_pipeline, native_ctx, native, gemma3_bundle, photos,
                                                                 tmp_path):
    """The same bundle with `image.attention` edited to causal: both runtimes follow the edit alike,
    and the seeded tokens move, so the bidirectional runs really are decoded both ways."""
    causal = tmp_path / "causal"
    shutil.copytree(gemma3_bundle, causal)
    m = json.loads((causal / "manifest.json").read_text())
    m["image"]["attention"] = "causal"
    (causal / "manifest.json").write_text(json.dumps(m))
    images = [photos["astronaut"]]
    both_ways = _sampled(python_pipeline, native_ctx, images, "What is this?")
    pipe = Pipeline(causal, RuntimeOptions(exact=True, threads=1, n_ctx=1024))
    try:
        with native.open(causal, exact=1, n_threads=1, n_ctx=1024) as ctx:
            one_way = _sampled(pipe, ctx, images, "What is this?")
    finally:
        pipe.close()
    assert both_ways[0] == both_ways[1] and one_way[0] == one_way[1]
    assert both_ways[0] != one_way[0]


def test_an_image_run_longer_than_the_batch_is_refused_by_name(native, gemma3_bundle, photos):
    with native.open(gemma3_bundle, n_threads=1, n_ctx=1024, n_batch=8) as ctx:
        with pytest.raises(binding().NativeError) as info:
            ctx.generate([rgb(photos["coffee"])], "What is this?", max_new_tokens=2)
    assert info.value.name == "MMEDGE_ERR_PROMPT" and "bidirectionally in one batch" in info.value.message

