"""Loading images from files with clear errors for everything a user can hand us."""
from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from mmedge.errors import ImageError

# Below this a ViT sees no structure at all, and HF's processors mis-guess the channel axis.
MIN_IMAGE_SIDE = 8
# Checked from the header before any pixel is decoded (decompression bombs).
MAX_IMAGE_PIXELS = 64_000_000


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file as an RGB PIL image, or raise `ImageError` saying what is wrong."""
    path = Path(path)
    if path.is_dir():
        raise ImageError(f"{path}: is a folder; give the path of one image file (repeat --image for several)")
    if not path.is_file():
        raise ImageError(f"{path}: no such file; give the path of a PNG, JPEG, WebP, BMP or GIF image")
    return _decode(lambda: Image.open(path), str(path))


def load_image_bytes(data: bytes, what: str = "image") -> Image.Image:
    """The same for an encoded image in memory (a data URI's payload)."""
    return _decode(lambda: Image.open(io.BytesIO(data)), what)


def _decode(open_image, what: str) -> Image.Image:
    """Header first (size limits before any pixel is decoded), then the pixels."""
    try:
        with open_image() as probe:
            width, height = probe.size
            fmt = probe.format
    except UnidentifiedImageError:
        raise ImageError(f"{what}: not an image file PIL can read; give a PNG, JPEG, WebP, BMP or GIF image") from None
    except Image.DecompressionBombError as e:
        # PIL refuses such headers itself (above twice its own limit), before our size check can run.
        raise ImageError(
            f"{what}: the image header claims too many pixels ({e}); the limit is {MAX_IMAGE_PIXELS} pixels, downscale it first"
        ) from None
    except (OSError, ValueError) as e:
        raise ImageError(f"{what}: unreadable image header ({e}); the file is damaged or not an image") from None
    check_image_size(width, height, what)
    try:
        with open_image() as img:
            img.load()
            return to_rgb(img, what)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(f"{what}: the {fmt} image data is damaged or truncated ({e}); re-save or re-download it") from None


def check_image_size(width: int, height: int, what: str = "image") -> None:
    if width < MIN_IMAGE_SIDE or height < MIN_IMAGE_SIDE:
        raise ImageError(
            f"{what}: {width}x{height} pixels is too small; images need at least {MIN_IMAGE_SIDE} pixels on each side"
        )
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(
            f"{what}: {width}x{height} = {width * height} pixels exceeds the limit of {MAX_IMAGE_PIXELS}; downscale it first"
        )


def to_rgb(img: Image.Image, what: str = "image") -> Image.Image:
    """Convert as transformers' `convert_to_rgb` does: alpha is composited onto white."""
    check_image_size(*img.size, what)
    if img.mode == "RGB":
        return img.copy()
    try:
        rgba = img.convert("RGBA")
    except (ValueError, OSError) as e:
        raise ImageError(f"{what}: cannot convert mode {img.mode} to RGB ({e}); save it as 8-bit RGB") from None
    background = Image.new("RGBA", rgba.size, (255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")
