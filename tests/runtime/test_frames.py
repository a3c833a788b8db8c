"""Video frames -> pixels equal transformers' video-processor arithmetic to the bit: torch's
antialiased uint8 resize, then the fused (x - 255 mean) / (255 std) in float32 (torch reference
in tests/export/video_reference.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmedge.runtime.frames import frame_pixels
from mmedge.video_spec import FramePreprocess

from ..export.video_reference import _fused_normalize, _resize_uint8
from ..video_helpers import source_frames

CLIP = FramePreprocess(image_mean=(0.48145466, 0.4578275, 0.40821073), image_std=(0.26862954, 0.26130258, 0.27577711))
HALF = FramePreprocess(image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5), resample="bilinear")


@pytest.mark.parametrize("spec", [CLIP, HALF], ids=["clip-bicubic", "half-bilinear"])
@pytest.mark.parametrize("size", [(64, 96), (40, 40), (97, 131), (128, 192)])
def test_frame_pixels_equal_the_video_processor(spec, size):
    frames = np.stack(source_frames(3))  # 3 x 64 x 96 photo crops
    ours = frame_pixels(frames, *size, spec)
    video = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
    if video.shape[-2:] != size:
        video = _resize_uint8(video, *size, spec.resample)
    ref = _fused_normalize(video, list(spec.image_mean), list(spec.image_std), spec.rescale_factor)
    assert ours.dtype == np.float32 and ours.shape == (3, 3, *size)
    assert np.array_equal(ours, ref.numpy())
