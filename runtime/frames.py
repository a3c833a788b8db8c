"""Video frames -> normalized pixel values, as transformers' video processors compute them.

HF's video processors work on uint8 torch tensors (not PIL images): torch's antialiased resize on
uint8 (`torch_resize.resize_uint8`, reproduced bit for bit in numpy), then rescale and normalize
fused into one step in float32: (x - mean * (1/rescale)) / (std * (1/rescale)), with mean and std
as float32 tensors. That differs from the image path (PIL resize; rescale, then normalize) by
a level here and there and by float rounding, so frames have their own function.
"""
from __future__ import annotations

import numpy as np

from mmedge.video_spec import FramePreprocess

from .torch_resize import resize_uint8


def fused_mean_std(spec: FramePreprocess) -> tuple[np.ndarray, np.ndarray]:
    """mean and std scaled by 1/rescale_factor in float32, as `_fuse_mean_std_and_rescale_factor`."""
    scale = np.float32(1.0 / spec.rescale_factor)
    mean = (np.asarray(spec.image_mean, np.float32) * scale).astype(np.float32)
    std = (np.asarray(spec.image_std, np.float32) * scale).astype(np.float32)
    return mean, std


def frame_pixels(frames: np.ndarray, height: int, width: int, spec: FramePreprocess) -> np.ndarray:
    """uint8 [N, H, W, 3] frames -> float32 [N, 3, height, width] encoder pixels."""
    if frames.shape[1:3] != (height, width):
        frames = resize_uint8(frames, height, width, mode=spec.resample)
    mean, std = fused_mean_std(spec)
    out = (frames.astype(np.float32) - mean) / std
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2), dtype=np.float32)
