"""Image layouts by manifest kind; every module here registers itself on import."""
from __future__ import annotations

from . import anyres, idefics3, qformer, qwen2vl, single  # noqa: F401  (registration)
from .base import FEATURES_INPUT, PIXEL_INPUT, ImageLayout, PreparedImage, image_layout

__all__ = ["FEATURES_INPUT", "PIXEL_INPUT", "ImageLayout", "PreparedImage", "image_layout"]
