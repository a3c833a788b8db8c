"""Gemma 3 parity: fp32 ONNX encoder/projector + F32 GGUF in exact mode reproduce transformers'
greedy `generate` token for token, with each image's soft tokens decoded bidirectionally (HF's
block mask) and the sliding-window layer really masking (prompts longer than the window)."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from mmedge.errors import PromptError
from mmedge.export.verify_inputs import synthetic_photo

PRESET = "gemma3-siglip"
N_TOKENS = 32
CASES = [
    (((131, 77),), "Describe this image."),  # no marker: the chat template places it
    (((64, 96), (150, 40)), "First <start_of_image> then <start_of_image>: what differs?"),  # markers
]


def _hf_generate(checkpoint, images, text, eog_ids):
    from transformers import AutoProcessor, Gemma3ForConditionalGeneration

    processor = AutoProcessor.from_pretrained(checkpoint)
    model = Gemma3ForConditionalGeneration.from_pretrained(checkpoint, dtype=torch.float32).eval()
    inputs = processor(images=images, text=text, return_tensors="pt", return_mm_token_type_ids=True)
    assert "token_type_ids" in inputs  # without them HF's mask would be causal over the images too
    with torch.no_grad():
        out = model.generate(**inputs, do_sample=False, max_new_tokens=N_TOKENS, min_new_tokens=N_TOKENS,
                             eos_token_id=eog_ids, pad_token_id=processor.tokenizer.pad_token_id)
    return out[0, inputs["input_ids"].shape[1]:].tolist(), inputs["input_ids"][0].tolist()


@pytest.fixture(scope="module")
def exact_pipeline(bundles, checkpoints):
    from mmedge.runtime.pipeline import Pipeline, RuntimeOptions

    bundle, _ = bundles(PRESET)
    pipe = Pipeline(bundle, RuntimeOptions(exact=True, n_ctx=1024))
    yield pipe, checkpoints(PRESET)
    pipe.close()


def _case(pipe, checkpoint, sizes, prompt):
    images = [synthetic_photo(w, h, seed=100 + i) for i, (w, h) in enumerate(sizes)]
    text = pipe.format(prompt, len(images))
    ref, hf_ids = _hf_generate(checkpoint, images, text, [int(t) for t in pipe.llm.eog_tokens])
    return images, ref, hf_ids


@pytest.mark.parametrize("sizes, prompt", CASES, ids=["one-image", "two-images"])
def test_greedy_tokens_equal_transformers_generate(exact_pipeline, sizes, prompt):
    from mmedge.runtime.pipeline import GenerationParams

    pipe, checkpoint = exact_pipeline
    images, ref, hf_ids = _case(pipe, checkpoint, sizes, prompt)
    ours = pipe.generate(images, prompt, GenerationParams(max_new_tokens=N_TOKENS, min_new_tokens=N_TOKENS))
    assert len(ref) == N_TOKENS
    assert ours.tokens == ref, f"first difference at {next(i for i, (a, b) in enumerate(zip(ref, ours.tokens)) if a != b)}"
    assert len(set(ref)) > 8
    assert ours.prompt_tokens == [t for t in hf_ids if t != pipe.manifest.image.marker_token_id]
    # The sliding layer's window is shorter than the prompt, so it really masks here.
    window = json.loads((checkpoint / "config.json").read_text())["text_config"]["sliding_window"]
    assert ours.stats.prompt_positions > 2 * window


def test_causal_image_runs_give_different_tokens(exact_pipeline):
    """Control: the same bundle with its image runs decoded causally no longer matches HF, so the
    bidirectional path is what makes the parity above."""
    from mmedge.runtime.pipeline import GenerationParams

    pipe, checkpoint = exact_pipeline
    sizes, prompt = CASES[0]
    images, ref, _ = _case(pipe, checkpoint, sizes, prompt)
    manifest = pipe.bundle.manifest
    original = manifest.image
    manifest.image = dataclasses.replace(original, attention="causal")
    try:
        causal = pipe.generate(images, prompt, GenerationParams(max_new_tokens=N_TOKENS, min_new_tokens=N_TOKENS)).tokens
    finally:
        manifest.image = original
    assert causal != ref
    assert pipe.generate(images, prompt, GenerationParams(max_new_tokens=N_TOKENS, min_new_tokens=N_TOKENS)).tokens == ref


def test_image_run_longer_than_the_batch_is_refused(bundles):
    from mmedge.runtime.pipeline import Pipeline, RuntimeOptions

    bundle, manifest = bundles(PRESET)
    pipe = Pipeline(bundle, RuntimeOptions(exact=True, n_ctx=256, n_batch=manifest.image.tokens_per_image - 1))
    try:
        with pytest.raises(PromptError, match=r"--batch.*at least 16"):
            pipe.generate([synthetic_photo(64, 64, seed=1)], "Hi")
    finally:
        pipe.close()


def test_export_report_is_exact(bundles):
    _, manifest = bundles(PRESET)
    v = manifest.verification
    assert manifest.image.attention == "bidirectional-image" and manifest.image.layout.kind == "single-wrapped"
    assert v["greedy_tokens_equal"] == v["greedy_tokens_total"] == 64
    assert all(c["prompt_tokens_equal"] for c in v["end_to_end"])
    assert v["preprocess"]["max_abs_diff"] == 0.0
    assert v["split_vs_model_max_abs_diff"] == 0.0
    for part in ("vision_encoder", "projector"):
        assert v[part]["cosine"] > 0.99999 and v[part]["max_abs_diff"] < 1e-4
    assert v["llm"]["top1_agreement"] == 1.0
    # llama.cpp's CPU GELU goes through an fp16 table: ~1e-3, not the 1e-6 of Llama/Qwen2.
    assert v["llm"]["last_logit_max_abs_diff"] < 5e-3
