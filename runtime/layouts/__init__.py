"""Image and video layouts by manifest kind; every module here registers itself on import."""
from __future__ import annotations

from . import anyres, idefics3, pooled_frames, qformer, qwen2vl, qwen2vl_frames, single  # noqa: F401  (registration)
from .base import FEATURES_INPUT, PIXEL_INPUT, ImageLayout, PreparedImage, image_layout
from .video import FrameRequest, VideoLayout, video_layout

__all__ = ["FEATURES_INPUT", "PIXEL_INPUT", "FrameRequest", "ImageLayout", "PreparedImage", "VideoLayout", "image_layout",
           "video_layout"]
