"""load_image: every bad file is an `ImageError` naming the problem; good files load as RGB."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mmedge.errors import ImageError, RuntimeInputError
from mmedge.runtime.images import MAX_IMAGE_PIXELS, MIN_IMAGE_SIDE, check_image_size, load_image, to_rgb


@pytest.fixture(scope="module")
def coffee(photos) -> Image.Image:
    return photos["coffee"]  # 600x400 RGB


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose (valid, CRC-checked) IHDR claims width x height 1-bit pixels, with no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"")) + _png_chunk(b"IEND", b"")


# --- errors -------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(ImageError, match="no such file") as e:
        load_image(path)
    assert str(path) in str(e.value)


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(ImageError, match="is a folder; give the path of one image file"):
        load_image(tmp_path)


def test_text_file_renamed_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n" * 20)
    with pytest.raises(ImageError, match="not an image file PIL can read") as e:
        load_image(path)
    assert str(path) in str(e.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="not an image file PIL can read"):
        load_image(str(path))  # str paths work too


@pytest.mark.parametrize("fraction", [0.3, 0.9, 0.999])
def test_truncated_png(tmp_path, coffee, fraction):
    full = tmp_path / "full.png"
    coffee.save(full)
    data = full.read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: int(len(data) * fraction)])  # cut inside the IDAT pixel data
    with pytest.raises(ImageError, match=r"the PNG image data is damaged or truncated \(image file is truncated") as e:
        load_image(cut)
    assert "re-save or re-download" in str(e.value)


@pytest.mark.parametrize("fraction", [0.3, 0.9, 0.999])
def test_truncated_jpeg(tmp_path, coffee, fraction):
    full = tmp_path / "full.jpg"
    coffee.save(full, quality=90)
    data = full.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ImageError, match=r"the JPEG image data is damaged or truncated \(image file is truncated"):
        load_image(cut)


def test_png_cut_inside_the_header(tmp_path, coffee):
    full = tmp_path / "full.png"
    coffee.save(full)
    cut = tmp_path / "cut.png"
    cut.write_bytes(full.read_bytes()[:20])  # signature + part of IHDR
    with pytest.raises(ImageError, match="unreadable image header"):
        load_image(cut)


def test_png_without_iend_still_loads(tmp_path, coffee):
    """Only the 12-byte IEND chunk is missing: every pixel is there, PIL (and HF) accept it, so do we."""
    full = tmp_path / "full.png"
    coffee.save(full)
    cut = tmp_path / "cut.png"
    cut.write_bytes(full.read_bytes()[:-12])
    img = load_image(cut)
    np.testing.assert_array_equal(np.asarray(img), np.asarray(coffee))


def test_one_pixel_image(tmp_path):
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (255, 0, 0)).save(path)
    with pytest.raises(ImageError, match=r"1x1 pixels is too small; images need at least 8 pixels on each side"):
        load_image(path)


def test_one_by_100000_image(tmp_path):
    path = tmp_path / "line.png"
    Image.new("L", (1, 100_000)).save(path)
    with pytest.raises(ImageError, match=r"1x100000 pixels is too small"):
        load_image(path)


def test_header_claiming_more_than_the_limit(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(_png_header_only(9000, 9000))
    with pytest.raises(ImageError, match=r"9000x9000 = 81000000 pixels exceeds the limit of 64000000; downscale it first"):
        load_image(path)


def test_real_9000x9000_png_is_refused_before_decoding(tmp_path):
    path = tmp_path / "big_real.png"
    Image.new("1", (9000, 9000)).save(path)  # 81 Mpx, ~10 KB on disk
    assert path.stat().st_size < 100_000
    with pytest.raises(ImageError, match=r"9000x9000 = 81000000 pixels exceeds the limit"):
        load_image(path)


def test_decompression_bomb_header_says_too_many_pixels(tmp_path):
    """Above twice PIL's own limit, PIL refuses the header before our check runs: still a size message."""
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(20000, 20000))
    with pytest.raises(ImageError, match=r"header claims too many pixels.*400000000 pixels.*limit is 64000000") as e:
        load_image(path)
    assert "damaged" not in str(e.value)


def test_image_error_is_a_runtime_input_error(tmp_path):
    with pytest.raises(RuntimeInputError):
        load_image(tmp_path / "missing.png")


# --- check_image_size boundaries -------------------------------------------------------------------
def test_limits_have_the_documented_values():
    assert MIN_IMAGE_SIDE == 8 and MAX_IMAGE_PIXELS == 64_000_000


def test_check_image_size_boundaries():
    check_image_size(8, 8)
    check_image_size(8000, 8000)  # exactly MAX_IMAGE_PIXELS
    check_image_size(8, 8_000_000)
    with pytest.raises(ImageError, match=r"^image: 7x8 pixels is too small"):
        check_image_size(7, 8)
    with pytest.raises(ImageError, match=r"^photo\.png: 8x7 pixels is too small"):
        check_image_size(8, 7, "photo.png")
    with pytest.raises(ImageError, match=r"8000x8001 = 64008000 pixels exceeds the limit of 64000000"):
        check_image_size(8000, 8001)
    with pytest.raises(ImageError, match=r"0x0 pixels is too small"):
        check_image_size(0, 0)


# --- good files ----------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["png", "jpg", "bmp", "webp", "gif", "tiff"])
def test_good_formats_load_as_rgb(tmp_path, coffee, ext):
    path = tmp_path / f"coffee.{ext}"
    coffee.save(path, **({"quality": 95} if ext in ("jpg", "webp") else {}))
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (600, 400)
    diff = np.abs(np.asarray(img).astype(int) - np.asarray(coffee).astype(int))
    if ext in ("png", "bmp", "tiff"):
        assert diff.max() == 0  # lossless
    elif ext == "gif":
        assert diff.mean() < 12  # 256-colour palette
    else:
        assert diff.mean() < 3  # lossy at quality 95


def test_loaded_image_is_detached_from_the_file(tmp_path, coffee):
    path = tmp_path / "c.png"
    coffee.save(path)
    img = load_image(path)
    path.unlink()  # the pixels were read before the file was closed
    assert np.asarray(img).shape == (400, 600, 3)


def test_rgba_png_loads_composited_on_white(tmp_path, coffee):
    arr = np.asarray(coffee.convert("RGBA")).copy()
    arr[:, :300, 3] = 0  # left half fully transparent
    arr[:, 300:, 3] = 255
    path = tmp_path / "rgba.png"
    Image.fromarray(arr, "RGBA").save(path)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (600, 400)
    out = np.asarray(img)
    assert np.all(out[:, :300] == 255)
    np.testing.assert_array_equal(out[:, 300:], np.asarray(coffee)[:, 300:])


def test_grayscale_png_loads_as_three_equal_channels(tmp_path, photos):
    cam = photos["camera"]
    assert cam.mode == "L"
    path = tmp_path / "camera.png"
    cam.save(path)
    out = np.asarray(load_image(path))
    assert out.shape == (512, 512, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], np.asarray(cam))


def test_palette_png_loads_with_palette_colours(tmp_path, coffee):
    pal = coffee.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    path = tmp_path / "pal.png"
    pal.save(path)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (600, 400)
    np.testing.assert_array_equal(np.asarray(img), np.asarray(pal.convert("RGB")))
    assert len(np.unique(np.asarray(img).reshape(-1, 3), axis=0)) <= 16


def test_palette_png_with_transparent_index(tmp_path, coffee):
    pal = coffee.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    path = tmp_path / "pal_trns.png"
    pal.save(path, transparency=0)
    idx = np.asarray(pal)
    assert (idx == 0).sum() > 0
    out = np.asarray(load_image(path))
    assert np.all(out[idx == 0] == 255)
    np.testing.assert_array_equal(out[idx != 0], np.asarray(pal.convert("RGB"))[idx != 0])


def test_16bit_png_loads_like_transformers(tmp_path):
    """16-bit grayscale ('I;16'): values <= 255 come through unchanged; larger ones clip to 255,
    exactly as transformers' convert_to_rgb (PIL's convert) does."""
    from transformers.image_transforms import convert_to_rgb

    values = (np.arange(40 * 64).reshape(40, 64) * 13).astype(np.uint16)  # 0 .. 33267
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as raw:
        assert raw.mode == "I;16"
        ref = convert_to_rgb(raw, return_numpy=True)
    out = np.asarray(load_image(path))
    assert out.shape == (40, 64, 3)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(out[..., 0], np.minimum(values, 255))


def test_cmyk_jpeg_loads_as_rgb(tmp_path, coffee):
    path = tmp_path / "cmyk.jpg"
    coffee.convert("CMYK").save(path, quality=95)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (600, 400)
    assert np.abs(np.asarray(img).astype(int) - np.asarray(coffee).astype(int)).mean() < 4


def test_to_rgb_returns_a_copy_for_rgb(coffee):
    out = to_rgb(coffee)
    assert out is not coffee and out.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(out), np.asarray(coffee))
