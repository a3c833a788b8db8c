"""Idefics3 / SmolVLM parity: fp32 bundles reproduce transformers' greedy `generate` token for
token on tiled images, and the runtime's tiling equals the HF image processor's exactly."""
from __future__ import annotations

import numpy as np
import pytest

from mmedge.export.verify_inputs import synthetic_photo

from .parity_helpers import FamilyParitySuite
from ..verification_checks import assert_end_to_end_matches



class Idefics3Suite(FamilyParitySuite):
    cases = (
        (((131, 77),), "Describe this image."),  # no marker: the chat template places it; 3x2 tiles
        (((64, 96), (150, 40)), "First <image> then <image>: what differs?"),  # two images, markers
    )
    n_ctx = 2048

    def check_layout(self, layout) -> None:
        assert layout.kind == "idefics3-tiles" and layout.split


class TestIdefics3(Idefics3Suite):
    preset = "idefics3-llama"


class TestSmolVLM(Idefics3Suite):
    preset = "smolvlm-llama"


def test_prompt_holds_row_and_column_tags(bundles):
    """The tiles really are several per image: the prompt has the processor's grid tags."""
    from mmedge.runtime.pipeline import Pipeline, RuntimeOptions

    pipe = Pipeline(bundles("smolvlm-llama")[0], RuntimeOptions(n_ctx=2048))
    try:
        prepared = pipe.prepare_images([synthetic_photo(131, 77, seed=1)])
        plan = pipe.plan(pipe.format("Describe this image.", 1), prepared)
        tags = [pipe.llm.tokenize(f"<row_{r}_col_{c}>", add_special=False)[0] for r in (1, 2, 3) for c in (1, 2, 3, 4)]
        assert all(t in plan.text_tokens for t in tags)
        assert (prepared[0].info["rows"], prepared[0].info["cols"]) == (3, 4)
    finally:
        pipe.close()


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
    assert v["passed"]
    assert_end_to_end_matches(v)
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


def test_quantized_tiled_bundle_is_verified_within_floors(bundles):
    """int8 encoder + Q8_0 LLM on the tiled family: every tile goes through the quantized encoder, and
    the export report measures it against PyTorch per call, within the recipes' floors."""
    _, manifest = bundles("smolvlm-llama", "int8", "fp32", "Q8_0")
    v = manifest.verification
    assert v["passed"] and not v["end_to_end_must_match"]
    assert 0.99 <= v["vision_encoder"]["cosine"] < 0.99999  # really quantized, and within the int8 floor
    assert v["projector"]["cosine"] > 0.99999
    assert 0.90 <= v["llm"]["top1_agreement"] < 1.0
    assert manifest.parts["llm"].details["tensor_types"].get("Q8_0", 0) > 0
    assert v["preprocess"]["max_abs_diff"] == 0.0 and v["preprocess"]["encoder_inputs"] > v["preprocess"]["images"]
