"""PaliGemma parity: fp32 ONNX encoder/projector + F32 GGUF in exact mode reproduce transformers'
greedy `generate` token for token. The prompt (image rows + BOS + text + "\\n") is one bidirectional
prefix decoded in a single non-causal batch, its text tokens as rows of the GGUF's token_embd."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mmedge.export.verify_inputs import synthetic_photo

from ..verification_checks import assert_end_to_end_matches, assert_greedy_matches, assert_llm_exact, hf_greedy_scored

PRESET = "paligemma-siglip"
N_TOKENS = 32


def _hf_generate(checkpoint, images, user_prompt, eog_ids):
    """The HF reference straight from the processor (its own prompt layout, not mmedge's template)."""
    from transformers import AutoProcessor, PaliGemmaForConditionalGeneration

    processor = AutoProcessor.from_pretrained(checkpoint)
    model = PaliGemmaForConditionalGeneration.from_pretrained(checkpoint, dtype=torch.float32).eval()
    inputs = processor(images=images, text=user_prompt, return_tensors="pt")
    inputs.pop("labels", None)
    assert int(inputs["token_type_ids"].sum()) == 0  # the whole prompt is prefix
    tokens, scores = hf_greedy_scored(model, inputs, eog_ids, processor.tokenizer.pad_token_id, N_TOKENS)
    return tokens, inputs["input_ids"][0].tolist(), scores


@pytest.fixture(scope="module")
def exact_pipeline(bundles, checkpoints):
    from mmedge.runtime.pipeline import Pipeline, RuntimeOptions

    bundle, _ = bundles(PRESET)
    pipe = Pipeline(bundle, RuntimeOptions(exact=True, n_ctx=1024))
    yield pipe, checkpoints(PRESET)
    pipe.close()


@pytest.mark.parametrize(
    "sizes, prompt, hf_prompt",
    [
        (((131, 77),), "Describe this image.", "<image>Describe this image."),
        (((64, 96), (150, 40)), "First <image> then <image>: what differs?", "First <image> then <image>: what differs?"),
    ],
    ids=["one-image", "two-images"],
)
def test_greedy_tokens_equal_transformers_generate(exact_pipeline, sizes, prompt, hf_prompt):
    from mmedge.runtime.pipeline import GenerationParams

    pipe, checkpoint = exact_pipeline
    images = [synthetic_photo(w, h, seed=100 + i) for i, (w, h) in enumerate(sizes)]
    ref, hf_ids, scores = _hf_generate(checkpoint, images, hf_prompt, [int(t) for t in pipe.llm.eog_tokens])
    ours = pipe.generate(images, prompt, GenerationParams(max_new_tokens=N_TOKENS, min_new_tokens=N_TOKENS))
    assert len(ref) == N_TOKENS
    assert_greedy_matches(pipe, ref, scores, ours.tokens)
    assert len(set(ref)) > 8
    assert ours.prompt_tokens == [t for t in hf_ids if t != pipe.manifest.image.marker_token_id]


def test_causal_prefix_gives_different_tokens(exact_pipeline):
    """Control: decoding the same prompt causally (text as tokens) no longer matches HF."""
    from mmedge.runtime.pipeline import GenerationParams

    pipe, checkpoint = exact_pipeline
    images = [synthetic_photo(131, 77, seed=100)]
    ref, _, _ = _hf_generate(checkpoint, images, "<image>Describe this image.", [int(t) for t in pipe.llm.eog_tokens])
    manifest = pipe.bundle.manifest
    original = manifest.image
    manifest.image = dataclasses.replace(original, attention="causal")
    try:
        causal = pipe.generate(images, "Describe this image.", GenerationParams(max_new_tokens=N_TOKENS, min_new_tokens=N_TOKENS)).tokens
    finally:
        manifest.image = original
    assert causal != ref


def test_token_rows_equal_llama_cpp_lookup(exact_pipeline, bundles):
    """The rows our GGUF reader gives, decoded as embeddings, produce exactly the logits of
    llama.cpp's own token lookup — for the F32 file and for a Q8_0 one."""
    from mmedge.runtime.gguf_rows import GgufTensorRows
    from mmedge.runtime.llamacpp import LlamaModel, LlamaOptions

    ids = [2, 40, 41, 300, 301, 17, 5, 200]
    for llm_type in ("F32", "Q8_0"):
        bundle, manifest = bundles(PRESET, llm=llm_type, allow_below_floor=True)
        path = bundle / manifest.parts["llm"].file
        rows = GgufTensorRows(path, "token_embd.weight")
        assert rows.type_name == llm_type
        llm = LlamaModel(path, LlamaOptions(n_ctx=256, exact=True))
        try:
            by_token = llm.decode_tokens(ids, logits_for="last")
            llm.reset()
            by_rows = llm.decode_embeddings(rows.rows(ids), want_last_logits=True)
        finally:
            llm.close()
        assert np.array_equal(by_token, by_rows), f"{llm_type}: max diff {np.abs(by_token - by_rows).max()}"


def test_export_report_is_exact(bundles):
    _, manifest = bundles(PRESET)
    v = manifest.verification
    assert manifest.image.attention == "prefix" and manifest.prompt.first_position == 1
    assert manifest.image.embedding_divisor == 8.0  # sqrt(64): dividing and llama.cpp's re-scaling are exact
    assert_end_to_end_matches(v)
    assert all(c["prompt_tokens_equal"] for c in v["end_to_end"])
    assert v["preprocess"]["max_abs_diff"] == 0.0
    assert v["split_vs_model_max_abs_diff"] == 0.0
    for part in ("vision_encoder", "projector"):
        assert v[part]["cosine"] > 0.99999 and v[part]["max_abs_diff"] < 1e-4
    assert_llm_exact(v)
    # GELU goes through llama.cpp's fp16 table: Gemma's tolerance, not Llama's.
    assert v["llm"]["floor"]["relative_to_largest_logit"] == 2e-3 and v["llm"]["last_logit_max_abs_diff"] < 5e-3
