"""The qwen2vl-patches layout against transformers: patches bit for bit (max diff 0.0), grid_thw,
rotary ids and token counts equal, on real photographs and odd synthetic sizes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmedge.errors import ImageError
from mmedge.export.verify_inputs import synthetic_photo


def _layout(ip, pad="<|image_pad|>"):
    from mmedge.export.families.common import tile_spec
    from mmedge.image_layouts import Qwen2VLPatches
    from mmedge.manifest import ImageSlotSpec
    from mmedge.runtime.layouts import image_layout

    spec = Qwen2VLPatches(patch_size=ip.patch_size, temporal_patch_size=ip.temporal_patch_size, merge_size=ip.merge_size,
                          min_pixels=ip.size["shortest_edge"], max_pixels=ip.size["longest_edge"], image_pad_token=pad)
    slot = ImageSlotSpec(marker=pad, marker_token_id=0, tokens_per_image=1, embedding_dim=8, layout=spec)
    return image_layout(tile_spec(ip, spec.factor, spec.factor), slot)


def _crops(photos):
    return [photos["astronaut"], photos["coffee"], photos["chelsea"].crop((0, 0, 301, 97)),
            photos["rocket"].crop((10, 20, 77, 333)), photos["camera"], synthetic_photo(131, 77, seed=3),
            synthetic_photo(45, 97, seed=4), synthetic_photo(33, 35, seed=5)]


@pytest.mark.parametrize("settings", [
    dict(patch_size=8, merge_size=2, temporal_patch_size=2, min_pixels=16 * 16 * 4, max_pixels=64 * 64 * 4),
    dict(),  # Qwen2-VL's own defaults: 14-px patches, 56*56 .. 28*28*1280 pixels
], ids=["tiny", "qwen2-vl-defaults"])
def test_patches_equal_the_hf_image_processor(photos, settings):
    from transformers import Qwen2VLImageProcessorPil
    from transformers.vision_utils import get_vision_position_ids

    ip = Qwen2VLImageProcessorPil(**settings)
    layout = _layout(ip)
    grids = set()
    for img in _crops(photos):
        ref = ip(images=[img], return_tensors="np")
        prepared = layout.prepare(img)
        thw = tuple(int(v) for v in ref["image_grid_thw"][0])
        assert prepared.info["grid_thw"] == thw
        assert prepared.tiles.shape == ref["pixel_values"].shape
        assert np.abs(prepared.tiles - ref["pixel_values"]).max() == 0.0
        ids = get_vision_position_ids(torch.tensor([thw]), ip.merge_size).numpy()
        assert np.array_equal(prepared.extra_inputs["position_ids"], ids)
        assert prepared.extra_inputs["position_ids"].dtype == np.int64
        n = thw[0] * thw[1] * thw[2] // ip.merge_size**2  # the processor's replace_image_token count
        assert prepared.n_rows == n == prepared.text.count("<|image_pad|>") == prepared.grid.shape[1]
        grids.add(thw)
    assert len(grids) >= 6  # the sizes really exercise different grids


def test_token_counts_equal_the_processor(checkpoints, photos):
    """The prompt's image tokens as the tiny checkpoint's own processor expands them."""
    from mmedge.export.checkpoint import architecture_of
    from mmedge.export.families import family_for_architecture

    folder = checkpoints("qwen2vl-tiny")
    family = family_for_architecture(architecture_of(folder))
    ckpt = family.load(str(folder))
    layout = _layout(ckpt.processor.image_processor)
    pad_id = ckpt.processor.image_token_id
    for img in _crops(photos):
        ids = family.reference_inputs(ckpt, [img], "a <|image_pad|> b")["input_ids"][0]
        assert int((ids == pad_id).sum()) == layout.prepare(img).n_rows


def test_mrope_offsets_walk_the_merged_grid():
    from mmedge.runtime.layouts.qwen2vl import mrope_offsets

    assert mrope_offsets(4, 6, 2).tolist() == [[0] * 6, [0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 1, 2]]


@pytest.mark.parametrize("h, w", [(7, 3), (1000, 999), (16, 3199), (29, 29), (1, 150), (12345, 67)])
def test_smart_resize_equals_transformers(h, w):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_smart_resize

    from mmedge.runtime.layouts.qwen2vl import smart_resize

    for factor, lo, hi in ((16, 1024, 16384), (28, 56 * 56, 28 * 28 * 1280)):
        assert smart_resize(h, w, factor, lo, hi) == hf_smart_resize(h, w, factor, lo, hi)


def test_too_elongated_image_is_refused():
    from transformers import Qwen2VLImageProcessorPil

    layout = _layout(Qwen2VLImageProcessorPil())
    with pytest.raises(ImageError, match="aspect ratios up to 200:1"):
        layout.prepare(synthetic_photo(2010, 10, seed=1))
