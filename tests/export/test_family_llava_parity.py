"""LLaVA parity: fp32 ONNX encoder/projector + F32 GGUF in exact mode reproduce transformers'
greedy `generate` token for token, measured here independently of the exporter's own report."""
from __future__ import annotations

import pytest
import torch

from mmedge.export.verify_inputs import synthetic_photo

from ..conftest import PARITY_PRESETS

N_TOKENS = 32


def _hf_generate(checkpoint, images, text, eog_ids):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    processor = AutoProcessor.from_pretrained(checkpoint)
    model = LlavaForConditionalGeneration.from_pretrained(checkpoint, dtype=torch.float32).eval()
    inputs = processor(images=images, text=text, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, do_sample=False, max_new_tokens=N_TOKENS, min_new_tokens=N_TOKENS,
                             eos_token_id=eog_ids, pad_token_id=processor.tokenizer.pad_token_id)
    return out[0, inputs["input_ids"].shape[1]:].tolist(), processor


@pytest.fixture(scope="module", params=PARITY_PRESETS)
def exact_pipeline(request, bundles, checkpoints):
    from mmedge.runtime.pipeline import Pipeline, RuntimeOptions

    bundle, _ = bundles(request.param)
    pipe = Pipeline(bundle, RuntimeOptions(exact=True, n_ctx=1024))
    yield request.param, pipe, checkpoints(request.param)
    pipe.close()


@pytest.mark.parametrize(
    "sizes, prompt",
    [
        (((131, 77),), "Describe this image."),  # no marker: the chat template places it
        (((64, 96), (150, 40)), "First <image> then <image>: what differs?"),  # two images, markers
    ],
    ids=["one-image", "two-images"],
)
def test_greedy_tokens_equal_transformers_generate(exact_pipeline, sizes, prompt):
    from mmedge.runtime.pipeline import GenerationParams

    preset, pipe, checkpoint = exact_pipeline
    images = [synthetic_photo(w, h, seed=100 + i) for i, (w, h) in enumerate(sizes)]
    text = pipe.format(prompt, len(images))
    ref, processor = _hf_generate(checkpoint, images, text, [int(t) for t in pipe.llm.eog_tokens])
    ours = pipe.generate(images, prompt, GenerationParams(max_new_tokens=N_TOKENS, min_new_tokens=N_TOKENS))
    assert len(ref) == N_TOKENS
    assert ours.tokens == ref, f"{preset}: first difference at {next(i for i, (a, b) in enumerate(zip(ref, ours.tokens)) if a != b)}"
    # The random model's text must depend on the image, or this test would prove little.
    assert len(set(ref)) > 8
    # The prompt's text tokens are the HF processor's, with the image runs taken out.
    hf_ids = processor(images=images, text=text, return_tensors="pt")["input_ids"][0].tolist()
    assert ours.prompt_tokens == [t for t in hf_ids if t != pipe.manifest.image.marker_token_id]


def test_generation_depends_on_the_image(exact_pipeline):
    from mmedge.runtime.pipeline import GenerationParams

    _, pipe, _ = exact_pipeline
    params = GenerationParams(max_new_tokens=8, min_new_tokens=8)
    a = pipe.generate([synthetic_photo(80, 80, seed=1)], "What is it?", params).tokens
    b = pipe.generate([synthetic_photo(80, 80, seed=2)], "What is it?", params).tokens
    assert a != b


@pytest.mark.parametrize("preset", PARITY_PRESETS)
def test_export_report_is_exact(bundles, preset):
    _, manifest = bundles(preset)
    v = manifest.verification
    assert v["greedy_tokens_equal"] == v["greedy_tokens_total"] == 64
    assert all(c["prompt_tokens_equal"] for c in v["end_to_end"])
    assert v["preprocess"]["max_abs_diff"] == 0.0
    assert v["split_vs_model_max_abs_diff"] == 0.0
    for part in ("vision_encoder", "projector"):
        assert v[part]["cosine"] > 0.99999 and v[part]["max_abs_diff"] < 1e-3
    assert v["llm"]["top1_agreement"] == 1.0
    assert v["llm"]["last_logit_max_abs_diff"] < 1e-3


def test_preset_shapes_cover_the_options(checkpoints):
    """The two parity presets exercise: CLIP and SigLIP, int and list feature layers, both
    strategies, Llama and Qwen2, untied and tied embeddings."""
    import json

    a = json.loads((checkpoints("clip-llama-bpe") / "config.json").read_text())
    b = json.loads((checkpoints("siglip-qwen2-tied") / "config.json").read_text())
    assert (a["vision_config"]["model_type"], a["text_config"]["model_type"]) == ("clip_vision_model", "llama")
    assert (b["vision_config"]["model_type"], b["text_config"]["model_type"]) == ("siglip_vision_model", "qwen2")
    assert isinstance(a["vision_feature_layer"], int) and isinstance(b["vision_feature_layer"], list)
    assert (a["vision_feature_select_strategy"], b["vision_feature_select_strategy"]) == ("default", "full")
    assert (a["tie_word_embeddings"], b["tie_word_embeddings"]) == (False, True)
