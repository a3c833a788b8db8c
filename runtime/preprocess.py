"""Image preprocessing in numpy + Pillow, driven by the manifest's `ImagePreprocessSpec`.

It reproduces transformers' PIL/numpy image processors step by step (the reference): resize
with PIL on uint8 pixels, center crop with floor offsets (zero padding when the image is
smaller, the odd pixel of padding going before the image, as transformers' numpy `center_crop`
does), rescale in float64 then cast to float32, normalize in float32, channels first.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from mmedge.errors import ManifestError
from mmedge.manifest import ImagePreprocessSpec

from .images import to_rgb

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def resize_shape(width: int, height: int, spec: ImagePreprocessSpec) -> tuple[int, int]:
    """(height, width) after the resize step."""
    if spec.resize_mode == "exact":
        return spec.size["height"], spec.size["width"]
    short_target = spec.size["shortest_edge"]
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = short_target, int(short_target * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def center_crop(pixels: np.ndarray, crop_h: int, crop_w: int) -> np.ndarray:
    """HWC center crop; pads with zeros around the image when it is smaller than the crop.

    An odd amount of padding puts the extra row/column before the image (top/left): transformers'
    numpy `center_crop` offsets the image by ceil(padding / 2).
    """
    h, w = pixels.shape[:2]
    if h < crop_h or w < crop_w:
        padded = np.zeros((max(h, crop_h), max(w, crop_w), pixels.shape[2]), dtype=pixels.dtype)
        top_pad = (max(h, crop_h) - h + 1) // 2
        left_pad = (max(w, crop_w) - w + 1) // 2
        padded[top_pad : top_pad + h, left_pad : left_pad + w] = pixels
        pixels, h, w = padded, padded.shape[0], padded.shape[1]
    top = (h - crop_h) // 2
    left = (w - crop_w) // 2
    return pixels[top : top + crop_h, left : left + crop_w]


def prepared_rgb(image: Image.Image, spec: ImagePreprocessSpec) -> Image.Image:
    """The image as the resize step takes it (RGB when the processor converts)."""
    if spec.resample not in RESAMPLE:
        raise ManifestError(f"preprocess.image.resample: {spec.resample!r} is not one of {sorted(RESAMPLE)}")
    return to_rgb(image) if spec.convert_rgb else image


def preprocess_image(image: Image.Image, spec: ImagePreprocessSpec) -> np.ndarray:
    """One PIL image -> float32 array [3, H, W]."""
    image = prepared_rgb(image, spec)
    height, width = resize_shape(image.width, image.height, spec)
    pixels = resize_rgb(image, height, width, spec)
    if spec.crop_size:
        pixels = center_crop(pixels, spec.crop_size["height"], spec.crop_size["width"])
    return normalize_pixels(pixels, spec)


def resize_rgb(image: Image.Image, height: int, width: int, spec: ImagePreprocessSpec) -> np.ndarray:
    """PIL resize of an RGB image to (height, width) with the spec's filter -> uint8 HWC."""
    pixels = np.asarray(image.resize((width, height), resample=RESAMPLE[spec.resample]), dtype=np.uint8)
    return np.repeat(pixels[:, :, None], 3, axis=2) if pixels.ndim == 2 else pixels


def normalize_pixels(pixels: np.ndarray, spec: ImagePreprocessSpec) -> np.ndarray:
    """uint8 HWC -> float32 CHW: rescale in float64 then cast, normalize in float32 (as transformers)."""
    if spec.rescale_factor is not None:
        out = (pixels.astype(np.float64) * spec.rescale_factor).astype(np.float32)
    else:
        out = pixels.astype(np.float32)
    if spec.image_mean is not None and spec.image_std is not None:
        out = (out - np.asarray(spec.image_mean, dtype=np.float32)) / np.asarray(spec.image_std, dtype=np.float32)
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)


def preprocess_images(images: list[Image.Image], spec: ImagePreprocessSpec) -> np.ndarray:
    """A list of PIL images -> float32 batch [N, 3, H, W]."""
    return np.stack([preprocess_image(img, spec) for img in images])
