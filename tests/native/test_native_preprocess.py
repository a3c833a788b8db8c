"""The native preprocessing (C++: PIL's fixed-point resize, crop/pad, rescale, normalize) against the
Python runtime's numpy + Pillow path, on scikit-image's photographs and odd crops of them, for
every resample filter, up- and downscaling, exact and shortest-edge resizes, crops larger than the
image (zero padding) and no normalization. The max abs diff over all of them is 0: bit-identical."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mmedge.manifest import ImagePreprocessSpec
from mmedge.runtime.preprocess import preprocess_image

from .native_helpers import rgb

MEAN, STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
SPECS = {
    "bicubic-short-48-crop": dict(resize_mode="shortest_edge", size={"shortest_edge": 48}, resample="bicubic",
                                  crop_size={"height": 48, "width": 48}),
    "bilinear-exact-37x53": dict(resize_mode="exact", size={"height": 37, "width": 53}, resample="bilinear", crop_size=None),
    "lanczos-short-100-crop-64x80": dict(resize_mode="shortest_edge", size={"shortest_edge": 100}, resample="lanczos",
                                         crop_size={"height": 64, "width": 80}),
    "box-exact-20": dict(resize_mode="exact", size={"height": 20, "width": 20}, resample="box", crop_size=None),
    "hamming-upscale-padded": dict(resize_mode="shortest_edge", size={"shortest_edge": 600}, resample="hamming",
                                   crop_size={"height": 900, "width": 1100}),
    "bicubic-exact-384-raw-pixels": dict(resize_mode="exact", size={"height": 384, "width": 384}, resample="bicubic",
                                         crop_size=None, rescale_factor=None, image_mean=None, image_std=None),
}


def _spec(overrides: dict) -> dict:
    base = dict(rescale_factor=1 / 255, image_mean=MEAN, image_std=STD, convert_rgb=True, layout="NCHW", dtype="float32")
    return {**base, **overrides}


@pytest.fixture(scope="module")
def images(photos):
    crops = {"astronaut-131x77": photos["astronaut"].crop((10, 20, 141, 97)),
             "coffee-9x300": photos["coffee"].crop((0, 0, 9, 300)),
             "camera-grey": photos["camera"].convert("RGB")}
    return {**{n: im.convert("RGB") for n, im in photos.items()}, **crops}


@pytest.mark.parametrize("name", SPECS)
def test_native_preprocessing_is_bit_identical_to_numpy(native, et_bundle, tmp_path, images, name):
    bundle = tmp_path / "b"
    shutil.copytree(et_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["preprocess"]["image"] = _spec(SPECS[name])
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    spec = ImagePreprocessSpec.from_dict(manifest["preprocess"]["image"])
    worst = 0.0
    with native.open(bundle, n_threads=1) as ctx:
        for label, image in images.items():
            expected = preprocess_image(image, spec)
            values, h, w = ctx.preprocess(*rgb(image))
            got = np.frombuffer(values, dtype=np.float32).reshape(3, h, w)
            assert got.shape == expected.shape, label
            worst = max(worst, float(np.abs(got - expected).max()))
    assert worst == 0.0, f"{name}: max abs diff {worst}"
