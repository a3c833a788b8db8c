"""The qwen2vl-patches layout's manifest values: round trip, and every bad value is a ManifestError
naming the field; the runtime refuses a layout that does not fit the preprocess spec or the slot."""
from __future__ import annotations

import pytest

from mmedge.errors import ManifestError
from mmedge.manifest import Manifest

from .manifest_helpers import manifest_error

QWEN2VL = {"kind": "qwen2vl-patches", "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
           "min_pixels": 3136, "max_pixels": 1003520, "image_pad_token": "<|image_pad|>"}


def test_qwen2vl_layout_round_trips(valid):
    valid["image"]["layout"] = dict(QWEN2VL)
    m = Manifest.from_dict(valid)
    assert m.image.layout.factor == 28
    assert Manifest.from_json(m.to_json()).image == m.image
    assert m.image.layout.to_dict() == {**QWEN2VL, "window_size": None}
    valid["image"]["layout"] = {**QWEN2VL, "window_size": 112}
    assert Manifest.from_dict(valid).image.layout.window_size == 112


@pytest.mark.parametrize("change, message", [
    ({"patch_size": 0}, "image.layout.patch_size: expected 1..1024, found 0"),
    ({"patch_size": "14"}, "image.layout.patch_size: expected int, found str"),
    ({"temporal_patch_size": 17}, "image.layout.temporal_patch_size: expected 1..16, found 17"),
    ({"merge_size": 0}, "image.layout.merge_size: expected 1..16, found 0"),
    ({"min_pixels": -1}, "image.layout.min_pixels: expected 1..268435456, found -1"),
    ({"max_pixels": 1 << 29}, "image.layout.max_pixels: expected 1..268435456, found 536870912"),
    ({"min_pixels": 5000, "max_pixels": 4000}, "image.layout.min_pixels: 5000 exceeds max_pixels 4000"),
    ({"min_pixels": 50, "max_pixels": 100}, "image.layout.max_pixels: 100 is less than one merge group (28x28 pixels)"),
    ({"image_pad_token": ""}, "image.layout.image_pad_token: expected a token's text (1..256 characters), found ''"),
    ({"window_size": 100}, "image.layout.window_size: expected a multiple of 28 (patch_size * merge_size) in 1..8192 or null, found 100"),
    ({"window_size": 0}, "image.layout.window_size: expected a multiple of 28"),
    ({"window_size": "112"}, "image.layout.window_size: expected int or NoneType, found str"),
    ({"merge_size": True}, "image.layout.merge_size: expected int, found a boolean"),
])
def test_bad_qwen2vl_values(valid, change, message):
    valid["image"]["layout"] = {**QWEN2VL, **change}
    assert message in manifest_error(valid)


@pytest.mark.parametrize("missing", [k for k in QWEN2VL if k != "kind"])
def test_qwen2vl_required_fields(valid, missing):
    valid["image"]["layout"] = {k: v for k, v in QWEN2VL.items() if k != missing}
    assert f"image.layout.{missing}: required field is missing" in manifest_error(valid)


@pytest.mark.parametrize("preprocess, tokens, message", [
    ({"resize_mode": "exact", "size": {"height": 28, "width": 28}, "crop_size": None}, 2,
     "image.tokens_per_image: a qwen2vl-patches layout gives 1 row per merge group, found 2"),
    ({"resize_mode": "exact", "size": {"height": 14, "width": 14}, "crop_size": None}, 1,
     "the size must be the resize unit 28x28"),
])
def test_runtime_refuses_a_layout_that_does_not_fit(valid, preprocess, tokens, message):
    from mmedge.runtime.layouts import image_layout

    valid["image"]["layout"] = dict(QWEN2VL)
    valid["image"]["tokens_per_image"] = tokens
    valid["preprocess"]["image"].update(preprocess)
    m = Manifest.from_dict(valid)
    with pytest.raises(ManifestError) as e:
        image_layout(m.image_preprocess, m.image)
    assert message in str(e.value)
