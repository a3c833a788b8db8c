"""Preprocessing parity with transformers' PIL image processors, on real photographs.

The reference is `processor(images=img, return_tensors="np")["pixel_values"]` with the processor
configured as real checkpoints configure it (no download). Our numpy + Pillow pipeline follows the
same steps with the same dtypes (PIL resize on uint8, float64 rescale cast to float32, float32
normalize), so the expected difference is exactly 0.0, and that is what we measure on every photo.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mmedge.errors import ImageError, ManifestError
from mmedge.export.families.llava import _image_spec_from_processor
from mmedge.manifest import ImagePreprocessSpec
from mmedge.runtime.preprocess import center_crop, preprocess_image, preprocess_images, resize_shape

PHOTO_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "camera")
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def _clip(shortest_edge: int, crop_h: int, crop_w: int | None = None, **kw):
    from transformers import CLIPImageProcessor  # the PIL backend without torchvision

    return CLIPImageProcessor(
        size={"shortest_edge": shortest_edge}, crop_size={"height": crop_h, "width": crop_w or crop_h}, **kw
    )


def _siglip(side: int):
    from transformers import SiglipImageProcessor

    return SiglipImageProcessor(size={"height": side, "width": side})


@pytest.fixture(scope="module")
def processors():
    """name -> (HF processor, our spec), as LLaVA-1.5 (CLIP 336), SigLIP-384 and CLIP-224 checkpoints ship them."""
    procs = {"clip336": _clip(336, 336), "siglip384": _siglip(384), "clip224": _clip(224, 224)}
    return {name: (p, _image_spec_from_processor(p)) for name, p in procs.items()}


def _reference(processor, image) -> np.ndarray:
    return processor(images=image, return_tensors="np")["pixel_values"][0]


def _max_diff(ours: np.ndarray, ref: np.ndarray) -> float:
    assert ours.shape == ref.shape, f"shape {ours.shape} != reference {ref.shape}"
    return float(np.abs(ours.astype(np.float64) - ref.astype(np.float64)).max())


# --- the specs built from the processors ------------------------------------------------------
def test_specs_match_the_processor_configs(processors):
    clip336 = processors["clip336"][1]
    assert clip336.resize_mode == "shortest_edge" and clip336.size == {"shortest_edge": 336}
    assert clip336.crop_size == {"height": 336, "width": 336}
    assert clip336.resample == "bicubic"
    assert clip336.rescale_factor == pytest.approx(1 / 255, abs=0)
    np.testing.assert_array_equal(np.float32(clip336.image_mean), CLIP_MEAN)
    np.testing.assert_array_equal(np.float32(clip336.image_std), CLIP_STD)
    siglip = processors["siglip384"][1]
    assert siglip.resize_mode == "exact" and siglip.size == {"height": 384, "width": 384}
    assert siglip.crop_size is None and siglip.resample == "bicubic"
    assert siglip.image_mean == [0.5, 0.5, 0.5] and siglip.image_std == [0.5, 0.5, 0.5]
    assert processors["clip224"][1].output_hw() == (224, 224)
    assert clip336.output_hw() == (336, 336) and siglip.output_hw() == (384, 384)


# --- parity on real photographs ---------------------------------------------------------------
@pytest.mark.parametrize("proc_name", ["clip336", "siglip384", "clip224"])
@pytest.mark.parametrize("photo", PHOTO_NAMES)
def test_real_photo_parity(photos, processors, proc_name, photo):
    processor, spec = processors[proc_name]
    img = photos[photo]
    ours = preprocess_image(img, spec)
    ref = _reference(processor, img)
    assert ours.dtype == np.float32 and ours.flags["C_CONTIGUOUS"]
    assert ours.shape == (3, *spec.output_hw())
    # Measured: 0.0 on all six photos (including the grayscale `camera`) for all three processors.
    assert _max_diff(ours, ref) == 0.0


def test_real_photos_are_not_trivial(photos, processors):
    """Guard for the parity test: the outputs really differ between photos and span the value range."""
    _, spec = processors["clip336"]
    a = preprocess_image(photos["astronaut"], spec)
    c = preprocess_image(photos["coffee"], spec)
    assert float(np.abs(a - c).max()) > 1.0
    # (0 - mean) / std and (1 - mean) / std bound the CLIP range: about -1.79 .. 2.15
    assert a.min() < -1.7 and a.max() > 2.0
    # camera is grayscale: the three channels come from one plane, differing only by mean/std
    cam = preprocess_image(photos["camera"], spec)
    np.testing.assert_allclose(cam[0] * CLIP_STD[0] + CLIP_MEAN[0], cam[1] * CLIP_STD[1] + CLIP_MEAN[1], atol=1e-6)


def test_batch_parity(photos, processors):
    processor, spec = processors["clip336"]
    imgs = [photos[n] for n in PHOTO_NAMES]
    ours = preprocess_images(imgs, spec)
    ref = processor(images=imgs, return_tensors="np")["pixel_values"]
    assert ours.shape == (6, 3, 336, 336)
    assert _max_diff(ours, ref) == 0.0
    # the batch is exactly the stack of single images, in order
    np.testing.assert_array_equal(ours[3], preprocess_image(photos["rocket"], spec))


@pytest.mark.parametrize(
    "kw, expect",
    [
        ({"resample": 2}, "bilinear"),
        ({"resample": 1}, "lanczos"),
        ({"do_normalize": False}, "bicubic"),
        ({"do_rescale": False, "do_normalize": False}, "bicubic"),
        ({"do_center_crop": False}, "bicubic"),
    ],
)
def test_processor_variants_parity(photos, kw, expect):
    processor = _clip(224, 224, **kw)
    spec = _image_spec_from_processor(processor)
    assert spec.resample == expect
    img = photos["rocket"]  # 640x427
    ours = preprocess_image(img, spec)
    ref = _reference(processor, img)
    assert _max_diff(ours, ref) == 0.0
    if kw.get("do_center_crop") is False:
        assert ours.shape == (3, 224, 335)  # int(224 * 640 / 427) = 335, no crop
    if kw.get("do_rescale") is False:
        assert ours.max() == 255.0 and ours.min() >= 0.0 and np.all(ours == np.round(ours))


# --- odd sizes --------------------------------------------------------------------------------
ODD_CROPS = {
    "panorama_640x50": ("rocket", (0, 200, 640, 250)),
    "panorama_600x41": ("coffee", (0, 100, 600, 141)),
    "tall_37x400": ("coffee", (300, 0, 337, 400)),
    "tall_50x427": ("rocket", (295, 0, 345, 427)),
    "strip_511x9": ("astronaut", (1, 100, 512, 109)),
    "tiny_9x9": ("chelsea", (200, 100, 209, 109)),
    "odd_301x203": ("chelsea", (11, 13, 312, 216)),
}


@pytest.mark.parametrize("proc_name", ["clip336", "siglip384"])
@pytest.mark.parametrize("crop_name", sorted(ODD_CROPS))
def test_odd_size_parity(photos, processors, proc_name, crop_name):
    processor, spec = processors[proc_name]
    photo, box = ODD_CROPS[crop_name]
    img = photos[photo].crop(box)
    assert img.size == (box[2] - box[0], box[3] - box[1])
    ours = preprocess_image(img, spec)
    # Measured: 0.0 for every crop, with both processors.
    assert _max_diff(ours, _reference(processor, img)) == 0.0
    assert ours.shape == (3, *spec.output_hw())


def test_panorama_resize_then_center_crop_takes_the_middle(photos, processors):
    _, spec = processors["clip336"]
    img = photos["rocket"].crop((0, 200, 640, 250))  # 640x50
    assert resize_shape(*img.size, spec) == (336, 4300)  # int(336 * 640 / 50) = 4300
    ours = preprocess_image(img, spec)
    resized = np.asarray(img.resize((4300, 336), Image.Resampling.BICUBIC))
    left = (4300 - 336) // 2  # 1982
    expected = ((resized[:, left : left + 336].astype(np.float64) / 255).astype(np.float32) - CLIP_MEAN) / CLIP_STD
    np.testing.assert_array_equal(ours, expected.transpose(2, 0, 1))


# --- modes: RGBA, LA, P, L, 1, CMYK, 16-bit -------------------------------------------------------
def _with_alpha(img: Image.Image) -> Image.Image:
    """RGBA: alpha ramps 0..255 left to right, and the top 20 rows are fully transparent."""
    arr = np.asarray(img.convert("RGBA")).copy()
    arr[..., 3] = np.linspace(0, 255, arr.shape[1]).round().astype(np.uint8)[None, :]
    arr[:20, :, 3] = 0
    return Image.fromarray(arr, "RGBA")


@pytest.fixture(scope="module")
def mode_variants(photos) -> dict[str, Image.Image]:
    """chelsea (or camera) in every mode a user can hand us, built once."""
    chelsea = photos["chelsea"]
    rgba = _with_alpha(chelsea)
    p_trns = chelsea.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    p_trns.info["transparency"] = 5  # palette index 5 is transparent
    return {
        "RGBA": rgba,
        "LA": rgba.convert("LA"),
        "PA": rgba.convert("PA"),
        "P": chelsea.convert("P", palette=Image.Palette.ADAPTIVE, colors=64),
        "P_transparency": p_trns,
        "L": chelsea.convert("L"),
        "1": photos["camera"].convert("1"),
        "CMYK": chelsea.convert("CMYK"),
        "I;16": Image.fromarray(np.asarray(photos["camera"]).astype(np.uint16)),
    }


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA", "P", "P_transparency", "L", "1", "CMYK", "I;16"])
@pytest.mark.parametrize("proc_name", ["clip336", "siglip384"])
def test_image_mode_parity(mode_variants, processors, proc_name, mode):
    processor, spec = processors[proc_name]
    img = mode_variants[mode]
    assert img.mode == mode.split("_")[0]
    ours = preprocess_image(img, spec)
    # Measured: 0.0 for every mode (alpha composited onto white as transformers' convert_to_rgb does).
    assert _max_diff(ours, _reference(processor, img)) == 0.0


def test_palette_with_transparency_really_has_transparent_pixels(mode_variants):
    p = mode_variants["P_transparency"]
    n = int((np.asarray(p) == 5).sum())
    assert n > 100  # so the parity test above exercises the compositing path
    from mmedge.runtime.images import to_rgb

    rgb = np.asarray(to_rgb(p))
    assert np.all(rgb[np.asarray(p) == 5] == 255)


def test_alpha_is_composited_on_white(photos):
    from mmedge.runtime.images import to_rgb

    rgba = _with_alpha(photos["chelsea"])
    src = np.asarray(rgba).astype(np.float64)
    out = np.asarray(to_rgb(rgba)).astype(np.float64)
    assert to_rgb(rgba).mode == "RGB"
    # fully transparent rows and the alpha-0 first column are pure white
    assert np.all(out[:20] == 255) and np.all(out[:, 0] == 255)
    # the last column is opaque: the photo's colours, unchanged
    np.testing.assert_array_equal(out[20:, -1], src[20:, -1, :3])
    # in between: colour * a + 255 * (1 - a), to within PIL's integer rounding
    a = src[20:, :, 3:4] / 255
    expected = src[20:, :, :3] * a + 255 * (1 - a)
    assert float(np.abs(out[20:] - expected).max()) <= 1.0


def test_fully_transparent_image_is_white_after_preprocess(processors):
    _, spec = processors["clip224"]
    img = Image.new("RGBA", (300, 200), (10, 200, 30, 0))
    out = preprocess_image(img, spec)
    white = ((np.float32(1.0) - CLIP_MEAN) / CLIP_STD).astype(np.float32)
    np.testing.assert_array_equal(out, np.broadcast_to(white[:, None, None], (3, 224, 224)))


def test_too_small_image_is_refused(processors):
    _, spec = processors["clip224"]
    with pytest.raises(ImageError, match=r"7x40 pixels is too small.*at least 8"):
        preprocess_image(Image.new("RGB", (7, 40)), spec)


def test_unconvertible_mode_is_an_image_error(photos, processors):
    _, spec = processors["clip224"]
    la_premultiplied = _with_alpha(photos["chelsea"]).convert("La")
    with pytest.raises(ImageError, match="cannot convert mode La to RGB"):
        preprocess_image(la_premultiplied, spec)


def test_unknown_resample_is_a_manifest_error(photos, processors):
    _, spec = processors["clip224"]
    bad = ImagePreprocessSpec(**{**spec.__dict__, "resample": "cubic"})
    with pytest.raises(ManifestError, match=r"resample: 'cubic' is not one of \['bicubic', 'bilinear'"):
        preprocess_image(photos["coffee"], bad)


# --- center crop, and its zero padding ----------------------------------------------------------
def test_center_crop_values():
    px = np.arange(5 * 4 * 2).reshape(5, 4, 2)
    out = center_crop(px, 3, 2)
    # top = (5 - 3) // 2 = 1, left = (4 - 2) // 2 = 1
    np.testing.assert_array_equal(out, px[1:4, 1:3])
    out = center_crop(px, 2, 1)
    # top = 3 // 2 = 1, left = 3 // 2 = 1 (floor: the extra row/column is dropped at the end)
    np.testing.assert_array_equal(out, px[1:3, 1:2])
    np.testing.assert_array_equal(center_crop(px, 5, 4), px)


def test_center_crop_pads_with_zeros_extra_pixel_first():
    px = np.full((3, 2, 1), 7, dtype=np.uint8)
    out = center_crop(px, 6, 5)
    # padding 3 rows: 2 above, 1 below; 3 columns: 2 left, 1 right (transformers puts ceil(pad/2) first)
    expected = np.zeros((6, 5, 1), dtype=np.uint8)
    expected[2:5, 2:4] = 7
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8
    # mixed: taller than the crop but narrower -> rows cropped, columns padded
    px = np.arange(6 * 2).reshape(6, 2, 1) + 1
    out = center_crop(px, 4, 5)
    expected = np.zeros((4, 5, 1), dtype=px.dtype)
    expected[:, 2:4] = px[1:5]
    np.testing.assert_array_equal(out, expected)


def test_center_crop_matches_transformers_for_all_small_shapes():
    from transformers.image_transforms import center_crop as hf_center_crop

    rng = np.random.default_rng(0)
    checked = 0
    for h in range(1, 8):
        for w in range(1, 8):
            px = rng.integers(1, 256, size=(h, w, 3), dtype=np.uint8)
            for ch in range(1, 9):
                for cw in range(1, 9):
                    ref = hf_center_crop(px, (ch, cw), data_format="channels_last", input_data_format="channels_last")
                    ours = center_crop(px, ch, cw)
                    assert ours.shape == ref.shape == (ch, cw, 3)
                    assert np.array_equal(ours, ref), (h, w, ch, cw)
                    checked += 1
    assert checked == 7 * 7 * 8 * 8


@pytest.mark.parametrize(
    "shortest_edge, crop_h, crop_w",
    [(200, 224, 224), (223, 224, 224), (221, 224, 230), (101, 224, 224)],
)
@pytest.mark.parametrize("photo", ["chelsea", "rocket"])
@pytest.mark.parametrize("transpose", [False, True])
def test_padding_path_parity(photos, shortest_edge, crop_h, crop_w, photo, transpose):
    """crop_size larger than the resized image: transformers zero-pads before normalizing."""
    processor = _clip(shortest_edge, crop_h, crop_w)
    spec = _image_spec_from_processor(processor)
    img = photos[photo]
    if transpose:
        img = img.transpose(Image.Transpose.TRANSPOSE)
    ours = preprocess_image(img, spec)
    # Measured: 0.0. Before the fix (floor instead of ceil for the leading padding) the odd-padding
    # cases (223 -> 224, 221 -> 224x230) were off by one row/column: max diff 2.9.
    assert _max_diff(ours, _reference(processor, img)) == 0.0
    assert ours.shape == (3, crop_h, crop_w)


def test_padding_rows_are_normalized_zeros(photos):
    spec = _image_spec_from_processor(_clip(223, 224))
    img = photos["chelsea"]  # 451x300 -> resized 335x223: one row of padding, which goes on top
    assert resize_shape(*img.size, spec) == (223, 335)
    out = preprocess_image(img, spec)
    zero = (-CLIP_MEAN / CLIP_STD).astype(np.float32)
    np.testing.assert_array_equal(out[:, 0, :], np.broadcast_to(zero[:, None], (3, 224)))
    assert not np.all(out[:, -1, :] == zero[:, None])  # the bottom row is photo, not padding
    assert int(np.all(out == zero[:, None, None], axis=0).all(axis=1).sum()) == 1  # exactly one padded row


# --- resize_shape --------------------------------------------------------------------------------
def _spec(**kw) -> ImagePreprocessSpec:
    base = dict(resize_mode="shortest_edge", size={"shortest_edge": 336}, resample="bicubic", crop_size=None,
                rescale_factor=None, image_mean=None, image_std=None)
    base.update(kw)
    return ImagePreprocessSpec(**base)


@pytest.mark.parametrize(
    "width, height, expected",
    [
        (640, 427, (336, 503)),  # int(336 * 640 / 427) = int(503.61) = 503
        (427, 640, (503, 336)),
        (451, 300, (336, 505)),  # int(505.12)
        (600, 400, (336, 504)),  # exact 504.0
        (512, 512, (336, 336)),
        (700, 50, (336, 4704)),  # int(336 * 14) = 4704
        (50, 700, (4704, 336)),
        (3, 1000, (112000, 336)),
        (337, 336, (336, 337)),  # int(337.0)
        (335, 336, (337, 336)),  # width is the short side -> 336; height int(336 * 336 / 335) = int(337.003) = 337
        (100, 100, (336, 336)),  # upscaling too
    ],
)
def test_resize_shape_shortest_edge(width, height, expected):
    assert resize_shape(width, height, _spec()) == expected


def test_resize_shape_shortest_edge_224():
    spec = _spec(size={"shortest_edge": 224})
    assert resize_shape(640, 427, spec) == (224, 335)  # int(335.74)
    assert resize_shape(300, 451, spec) == (336, 224)  # int(336.75)


def test_resize_shape_exact_ignores_aspect():
    spec = _spec(resize_mode="exact", size={"height": 384, "width": 200})
    assert resize_shape(640, 427, spec) == (384, 200)
    assert resize_shape(9, 5000, spec) == (384, 200)


def test_resize_shape_matches_transformers():
    from transformers.image_transforms import get_resize_output_image_size

    spec = _spec()
    for w, h in [(640, 427), (451, 300), (700, 50), (50, 700), (999, 1000), (1000, 999), (333, 777), (8, 8)]:
        dummy = np.zeros((3, h, w), dtype=np.uint8)
        ref = get_resize_output_image_size(dummy, 336, default_to_square=False, input_data_format="channels_first")
        assert resize_shape(w, h, spec) == tuple(ref), (w, h)
