"""Image layouts by manifest kind; every module here registers itself on import."""
from __future__ import annotations

from . import anyres, idefics3, single  # noqa: F401  (registration)
from .base import ImageLayout, PreparedImage, image_layout

__all__ = ["ImageLayout", "PreparedImage", "image_layout"]
