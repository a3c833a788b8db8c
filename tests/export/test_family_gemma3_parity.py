"""Gemma 3 parity: fp32 ONNX encoder/projector + F32 GGUF in exact mode reproduce transformers'
greedy `generate` token for token, with each image's soft tokens decoded bidirectionally (HF's
block mask) and the sliding-window layer really masking (prompts longer than the window)."""
from __future__ import annotations

import dataclasses
import json

import pytest

from mmedge.errors import PromptError
from mmedge.export.verify_inputs import synthetic_photo

from .parity_helpers import N_TOKENS, FamilyParitySuite, hf_greedy
from ..verification_checks import assert_greedy_matches, assert_llm_exact

PRESET = "gemma3-siglip"
CASES = (
    (((131, 77),), "Describe this image."),  # no marker: the chat template places it
    (((64, 96), (150, 40)), "First <start_of_image> then <start_of_image>: what differs?"),  # markers
)


class TestGemma3(FamilyParitySuite):
    preset = PRESET
    cases = CASES
    tiled = False

    def check_layout(self, layout) -> None:
        assert layout.kind == "single-wrapped"

    def test_inputs_carry_the_image_blocks_and_outrun_the_window(self, exact_pipeline, checkpoints):
        """HF's reference gets token_type_ids (its bidirectional image blocks), and the prompts are
        longer than twice the sliding window, so the sliding layer really masks in the parity test."""
        pipe, family, ckpt = exact_pipeline
        sizes, prompt = CASES[0]
        images = [synthetic_photo(w, h, seed=100) for w, h in sizes]
        inputs = family.reference_inputs(ckpt, images, pipe.format(prompt, len(images)))
        assert "token_type_ids" in inputs  # without them HF's mask would be causal over the images too
        window = json.loads((checkpoints(PRESET) / "config.json").read_text())["text_config"]["sliding_window"]
        assert inputs["input_ids"].shape[1] > 2 * window

    def test_causal_image_runs_give_different_tokens(self, exact_pipeline):
        """Control: the same bundle with its image runs decoded causally no longer matches HF, so the
        bidirectional path is what makes the parity."""
        from mmedge.runtime.pipeline import GenerationParams

        pipe, family, ckpt = exact_pipeline
        sizes, prompt = CASES[0]
        images = [synthetic_photo(w, h, seed=100 + i) for i, (w, h) in enumerate(sizes)]
        ref, _, scores = hf_greedy(family, ckpt, images, pipe.format(prompt, len(images)),
                                   [int(t) for t in pipe.llm.eog_tokens])
        params = GenerationParams(max_new_tokens=N_TOKENS, min_new_tokens=N_TOKENS)
        manifest = pipe.bundle.manifest
        original = manifest.image
        manifest.image = dataclasses.replace(original, attention="causal")
        try:
            causal = pipe.generate(images, prompt, params).tokens
        finally:
            manifest.image = original
        assert causal != ref
        assert_greedy_matches(pipe, ref, scores, pipe.generate(images, prompt, params).tokens)


def test_image_run_longer_than_the_batch_is_refused(bundles):
    from mmedge.runtime.pipeline import Pipeline, RuntimeOptions

    bundle, manifest = bundles(PRESET)
    pipe = Pipeline(bundle, RuntimeOptions(exact=True, n_ctx=256, n_batch=manifest.image.tokens_per_image - 1))
    try:
        with pytest.raises(PromptError, match=r"--batch.*at least 16"):
            pipe.generate([synthetic_photo(64, 64, seed=1)], "Hi")
    finally:
        pipe.close()


def test_export_report_llm_tolerance(bundles):
    v = bundles(PRESET)[1].verification
    assert bundles(PRESET)[1].image.attention == "bidirectional-image"
    # llama.cpp's CPU GELU goes through an fp16 table: ~1e-3, not the 1e-6 of Llama/Qwen2.
    assert_llm_exact(v)
    assert v["llm"]["floor"]["relative_to_largest_logit"] == 2e-3 and v["llm"]["last_logit_max_abs_diff"] < 5e-3
