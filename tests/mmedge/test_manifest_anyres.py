"""The anyres layout's manifest values: round trip (float32 newline bit-exact), and every bad value
is a ManifestError naming the field; the runtime refuses a layout that does not fit the slot."""
from __future__ import annotations

import struct

import pytest

from mmedge.errors import ManifestError
from mmedge.manifest import Manifest

from .manifest_helpers import manifest_error

# float32 values that need all 24 bits (and one subnormal-free tiny one).
NEWLINE = [struct.unpack("f", struct.pack("f", v))[0] for v in (0.1, -1 / 3, 1e-30, 12345.678)]
ANYRES = {"kind": "anyres", "tile_size": 336, "grid_pinpoints": [[336, 672], [672, 336], [672, 672]],
          "feature_side": 24, "image_newline": NEWLINE, "max_num_patches": None}


def test_anyres_layout_round_trips(valid):
    valid["image"]["layout"] = dict(ANYRES)
    m = Manifest.from_dict(valid)
    assert m.image.layout.grid_pinpoints == ((336, 672), (672, 336), (672, 672))
    again = Manifest.from_json(m.to_json()).image
    assert again == m.image
    assert [struct.pack("f", v) for v in again.layout.image_newline] == [struct.pack("f", v) for v in NEWLINE]


@pytest.mark.parametrize("change, message", [
    ({"tile_size": 0}, "image.layout.tile_size: expected 1..8192, found 0"),
    ({"grid_pinpoints": []}, "image.layout.grid_pinpoints: expected 1..1024 [height, width] pairs, found 0"),
    ({"grid_pinpoints": "336x672"}, "image.layout.grid_pinpoints: expected list, found str"),
    ({"grid_pinpoints": [[336]]}, "image.layout.grid_pinpoints[0]: expected [height, width], two ints in 1..65536"),
    ({"grid_pinpoints": [[336, 0]]}, "image.layout.grid_pinpoints[0]: expected [height, width]"),
    ({"grid_pinpoints": [[336, True]]}, "image.layout.grid_pinpoints[0]: expected [height, width]"),
    ({"grid_pinpoints": [[336, 672], [500, 336]]}, "image.layout.grid_pinpoints[1]: [500, 336] is not a whole number of 336-pixel tiles"),
    ({"feature_side": 400}, "image.layout.feature_side: 400 exceeds tile_size 336"),
    ({"image_newline": []}, "image.layout.image_newline: expected 1..2^20 numbers, found 0"),
    ({"image_newline": [0.5, "x"]}, "image.layout.image_newline[1]: expected a finite number, found 'x'"),
    ({"image_newline": [0.5, float("nan")]}, "image.layout.image_newline[1]: expected a finite number, found nan"),
    ({"image_newline": [True]}, "image.layout.image_newline[0]: expected a finite number, found True"),
    ({"max_num_patches": 0}, "image.layout.max_num_patches: expected 1..1024 or null, found 0"),
    ({"max_num_patches": "9"}, "image.layout.max_num_patches: expected int or NoneType, found str"),
])
def test_bad_anyres_values(valid, change, message):
    valid["image"]["layout"] = {**ANYRES, **change}
    assert message in manifest_error(valid)


@pytest.mark.parametrize("missing", ["tile_size", "grid_pinpoints", "feature_side", "image_newline"])
def test_anyres_required_fields(valid, missing):
    valid["image"]["layout"] = {k: v for k, v in ANYRES.items() if k != missing}
    assert f"image.layout.{missing}: required field is missing" in manifest_error(valid)


@pytest.mark.parametrize("change, message", [
    ({"feature_side": 23}, "image.layout.feature_side: 23^2 must equal image.tokens_per_image (576)"),
    ({"image_newline": [0.0] * 3}, "image.layout.image_newline: expected 4096 values (image.embedding_dim), found 3"),
    ({"tile_size": 672, "grid_pinpoints": [[672, 672]]}, "the encoder input must be one 672-pixel tile"),
])
def test_runtime_refuses_a_layout_that_does_not_fit(valid, change, message):
    from mmedge.runtime.layouts import image_layout

    valid["image"]["layout"] = {**ANYRES, "image_newline": [0.0] * valid["image"]["embedding_dim"], **change}
    m = Manifest.from_dict(valid)
    with pytest.raises(ManifestError) as e:
        image_layout(m.image_preprocess, m.image)
    assert message in str(e.value)
