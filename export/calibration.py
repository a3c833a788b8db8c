"""Calibration images for static quantization: a user's folder, or the documented default set.

The default set is 16 synthetic photo-like images (`verify_inputs.synthetic_photo`, seeds
1000-1015, sizes from 64x48 to 320x240): smooth gradients, hard-edged objects and sensor noise,
so activation ranges cover both flat and textured regions. A folder of the user's own images
(the kind they will run on) calibrates better and is the recommended choice.
"""
from __future__ import annotations

from pathlib import Path

from mmedge.errors import CalibrationError, ImageError

from .verify_inputs import synthetic_photo

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MAX_CALIBRATION_IMAGES = 512
DEFAULT_SIZES = ((64, 48), (96, 96), (128, 72), (200, 150), (320, 240), (75, 130), (160, 160), (240, 100))


def default_calibration_images() -> list:
    return [synthetic_photo(*DEFAULT_SIZES[i % len(DEFAULT_SIZES)], seed=1000 + i) for i in range(16)]


def load_calibration_images(folder: str | Path) -> list:
    from mmedge.runtime.images import load_image

    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"--calibration-images {folder}: not a folder; give a folder of PNG/JPEG images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise CalibrationError(
            f"--calibration-images {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it; add 16-200 images like "
            "the ones the model will see, or leave the option out to use the default set"
        )
    images = []
    for path in files[:MAX_CALIBRATION_IMAGES]:
        try:
            images.append(load_image(path))
        except ImageError as e:
            raise CalibrationError(f"--calibration-images: {e}") from None
    return images
