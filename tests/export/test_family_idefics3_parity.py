"""Idefics3 / SmolVLM parity: fp32 bundles reproduce transformers' greedy `generate` token for
token on tiled images, and the runtime's tiling equals the HF image processor's exactly."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmedge.export.verify_inputs import synthetic_photo

N_TOKENS = 32
PRESETS = ("idefics3-llama", "smolvlm-llama")


@pytest.fixture(scope="module", params=PRESETS)
def exact_pipeline(request, bundles, checkpoints):
    from mmedge.runtime.pipeline import Pipeline, RuntimeOptions

    bundle, _ = bundles(request.param)
    pipe = Pipeline(bundle, RuntimeOptions(exact=True, n_ctx=2048))
    yield request.param, pipe, checkpoints(request.param)
    pipe.close()


@pytest.fixture(scope="module")
def reference_models(checkpoints):
    """preset -> (HF model, HF processor), loaded once; SmolVLM's processor is its image half
    (the family's loader: its video half needs torchvision)."""
    from mmedge.export.families.idefics3 import Idefics3Family

    cache = {}

    def get(preset):
        if preset not in cache:
            ckpt = Idefics3Family().load(str(checkpoints(preset)))
            cache[preset] = (ckpt.model, ckpt.processor)
        return cache[preset]

    return get


@pytest.mark.parametrize(
    "sizes, prompt",
    [
        (((131, 77),), "Describe this image."),  # no marker: the chat template places it
        (((64, 96), (150, 40)), "First <image> then <image>: what differs?"),  # two images, markers
    ],
    ids=["one-image", "two-images"],
)
def test_greedy_tokens_equal_transformers_generate(exact_pipeline, reference_models, sizes, prompt):
    from mmedge.runtime.pipeline import GenerationParams

    preset, pipe, _ = exact_pipeline
    model, processor = reference_models(preset)
    images = [synthetic_photo(w, h, seed=100 + i) for i, (w, h) in enumerate(sizes)]
    text = pipe.format(prompt, len(images))
    inputs = processor(images=[images], text=text, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, do_sample=False, max_new_tokens=N_TOKENS, min_new_tokens=N_TOKENS,
                             eos_token_id=[int(t) for t in pipe.llm.eog_tokens],
                             pad_token_id=processor.tokenizer.pad_token_id)
    ref = out[0, inputs["input_ids"].shape[1]:].tolist()
    ours = pipe.generate(images, prompt, GenerationParams(max_new_tokens=N_TOKENS, min_new_tokens=N_TOKENS))
    assert len(ref) == N_TOKENS
    assert ours.tokens == ref, f"{preset}: first difference at {next(i for i, (a, b) in enumerate(zip(ref, ours.tokens)) if a != b)}"
    assert len(set(ref)) > 8  # varied text: equality means something
    # Several tiles per image really were used: the processor wrote row/column tags.
    hf_ids = inputs["input_ids"][0].tolist()
    row_tags = [processor.tokenizer.convert_tokens_to_ids(f"<row_{r}_col_{c}>") for r in (1, 2) for c in (1, 2)]
    assert all(t in hf_ids for t in row_tags)
    image_id = pipe.manifest.image.marker_token_id
    assert ours.prompt_tokens == [t for t in hf_ids if t != image_id]
    assert ours.stats.prompt_positions == len(hf_ids)


def test_generation_depends_on_the_image(exact_pipeline):
    from mmedge.runtime.pipeline import GenerationParams

    _, pipe, _ = exact_pipeline
    params = GenerationParams(max_new_tokens=8, min_new_tokens=8)
    a = pipe.generate([synthetic_photo(90, 70, seed=1)], "What is it?", params).tokens
    b = pipe.generate([synthetic_photo(90, 70, seed=2)], "What is it?", params).tokens
    assert a != b


@pytest.mark.parametrize("preset", PRESETS)
def test_export_report_is_exact(bundles, preset):
    _, manifest = bundles(preset)
    v = manifest.verification
    assert v["greedy_tokens_equal"] == v["greedy_tokens_total"] == 64
    assert all(c["prompt_tokens_equal"] for c in v["end_to_end"])
    assert v["preprocess"]["max_abs_diff"] == 0.0
    assert v["preprocess"]["encoder_inputs"] > v["preprocess"]["images"]  # tiles, not one view per image
    assert v["split_vs_model_max_abs_diff"] < 1e-5
    assert v["llm"]["top1_agreement"] == 1.0
    assert manifest.image.layout.kind == "idefics3-tiles"


# -- the tiling itself, against the HF image processor, on real photographs ---------------------
def _layout_for(image_processor, image_seq_len=4):
    from mmedge.export.families.common import tile_spec
    from mmedge.image_layouts import Idefics3Tiles
    from mmedge.manifest import ImageSlotSpec
    from mmedge.runtime.layouts import image_layout

    tile = image_processor.max_image_size["longest_edge"]
    slot = ImageSlotSpec(marker="<image>", marker_token_id=0, tokens_per_image=image_seq_len, embedding_dim=8,
                         layout=Idefics3Tiles(longest_edge=image_processor.size["longest_edge"], tile_size=tile,
                                              split=image_processor.do_image_splitting, image_token="<image>",
                                              fake_image_token="<fake_token_around_image>",
                                              global_image_token="<global-img>"))
    return image_layout(tile_spec(image_processor, tile, tile), slot)


@pytest.mark.parametrize("longest_edge, tile, split", [(144, 48, True), (128, 32, True), (100, 48, False), (48, 48, True)],
                         ids=["3x3-max", "4x4-max", "no-split", "one-tile"])
def test_tiles_equal_the_hf_image_processor(photos, longest_edge, tile, split):
    from transformers import SmolVLMImageProcessorPil
    from transformers.models.smolvlm.processing_smolvlm import get_image_prompt_string

    ip = SmolVLMImageProcessorPil(size={"longest_edge": longest_edge}, max_image_size={"longest_edge": tile},
                                  do_image_splitting=split)
    layout = _layout_for(ip)
    crops = [photos["astronaut"], photos["coffee"], photos["chelsea"].crop((0, 0, 301, 97)),
             photos["rocket"].crop((10, 20, 77, 333)), photos["camera"], synthetic_photo(33, 35, seed=3)]
    tile_counts = []
    for img in crops:
        ref = ip(images=[[img]], return_tensors="np", return_row_col_info=True)
        prepared = layout.prepare(img)
        hf_tiles = ref["pixel_values"][0]
        assert prepared.tiles.shape == hf_tiles.shape
        assert np.abs(prepared.tiles - hf_tiles).max() == 0.0
        rows, cols = ref["rows"][0][0], ref["cols"][0][0]
        assert (prepared.info["rows"], prepared.info["cols"]) == (rows, cols)
        # The prompt text is SmolVLM's own expansion for that grid (its module-level function).
        assert prepared.text == get_image_prompt_string(rows, cols, 4, "<fake_token_around_image>", "<image>", "<global-img>")
        assert prepared.n_rows == prepared.tiles.shape[0] * 4 == prepared.text.count("<image>")
        tile_counts.append(prepared.tiles.shape[0])
    if split and longest_edge > tile:
        assert max(tile_counts) > 4 and len(set(tile_counts)) > 1  # several grids were exercised
    else:
        assert set(tile_counts) == {1}


def test_executorch_and_coreml_variants(checkpoints, bundles, tmp_path):
    """The tiles run through ExecuTorch equal to the ONNX bundle's tokens; Core ML (not runnable on
    Linux) passes its static check, decompressed weights run in PyTorch."""
    from mmedge.export.exporter import ExportConfig, export_bundle
    from mmedge.runtime.pipeline import GenerationParams, Pipeline, RuntimeOptions

    m = export_bundle(ExportConfig(checkpoint=checkpoints("smolvlm-llama"), output=tmp_path / "b",
                                   encoder_target="executorch", projector_target="executorch", extra_targets=("coreml",)))
    v = m.verification
    assert v["passed"] and v["greedy_tokens_equal"] == v["greedy_tokens_total"] == 64
    assert v["selected_targets"] == {"vision_encoder": "executorch", "projector": "executorch"}
    coreml = [a for alts in v["alternatives"].values() for a in alts]
    assert [a["target"] for a in coreml] == ["coreml", "coreml"] and all(a["cosine"] > 0.99999 for a in coreml)
    params = GenerationParams(max_new_tokens=16, min_new_tokens=16)
    outs = {}
    for name, folder in (("executorch", tmp_path / "b"), ("onnx", bundles("smolvlm-llama")[0])):
        pipe = Pipeline(folder, RuntimeOptions(exact=True, n_ctx=2048))
        try:
            outs[name] = pipe.generate([synthetic_photo(131, 77, seed=5)], "Describe this image.", params)
        finally:
            pipe.close()
    assert outs["executorch"].stats.providers["vision_encoder"] == "ExecuTorch XnnpackBackend"
    assert outs["executorch"].tokens == outs["onnx"].tokens and len(set(outs["onnx"].tokens)) > 4
