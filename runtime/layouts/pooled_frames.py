"""LLaVA-OneVision video, step for step as its video processor, processor and model do it.

prepare: every frame squashed to the encoder's tile (torch's antialiased resize on uint8, fused
normalization: `runtime/frames.py`); frames go to the encoder in calls of at most
`FRAMES_PER_CALL` (the compiled parts' batch bound; each frame is encoded on its own anyway).
assemble (get_video_features): each frame's feature_side^2 projected rows pooled bilinearly to
ceil(side / 2)^2 (torch's F.interpolate, as the anyres layout pools), the frames' rows one after
another, then one `image_newline` row. The marker expands to one video token per row.
"""
from __future__ import annotations

import numpy as np

from mmedge.errors import ManifestError
from mmedge.video_spec import PooledFrames

from ..frames import frame_pixels
from ..video import Video
from .anyres import AnyResLayout, bilinear_resize
from .base import PIXEL_INPUT, PreparedImage
from .video import VideoLayout, register_video_layout

# Frames per encoder call: below the batch bound of the ExecuTorch / Core ML parts (64).
FRAMES_PER_CALL = 16


@register_video_layout
class PooledFramesLayout(VideoLayout):
    kind = "pooled-frames"

    def __init__(self, spec, image_layout):
        super().__init__(spec, image_layout)
        layout: PooledFrames = spec.layout
        if not isinstance(image_layout, AnyResLayout):
            raise ManifestError("video.layout: pooled-frames needs the anyres image layout (its image_newline)")
        if (layout.frame_size, layout.feature_side) != (image_layout.spec.tile_size, image_layout.spec.feature_side):
            raise ManifestError(f"video.layout: frame_size {layout.frame_size} / feature_side {layout.feature_side} differ "
                                f"from the image tiles' ({image_layout.spec.tile_size} / {image_layout.spec.feature_side}); "
                                "the encoder takes one tile size: re-export the bundle")
        self.layout = layout
        self.newline = image_layout.newline

    def prepare(self, video: Video) -> PreparedImage:
        side = self.layout.frame_size
        pixels = frame_pixels(video.frames, side, side, self.spec.frames)
        n_rows = self.layout.rows(len(pixels))
        chunks = [{PIXEL_INPUT: pixels[i:i + FRAMES_PER_CALL]} for i in range(0, len(pixels), FRAMES_PER_CALL)]
        return PreparedImage(tiles=pixels, text=self.spec.marker * n_rows, n_rows=n_rows, chunks=chunks, medium="video",
                             info={"frames": len(pixels), "frame_indices": video.indices})

    def projected_shape(self, prepared: PreparedImage) -> tuple[int, ...]:
        return (prepared.info["frames"], self.layout.feature_side**2, self.embedding_dim)

    def assemble(self, prepared: PreparedImage, embeddings: np.ndarray) -> np.ndarray:
        side, pooled = self.layout.feature_side, self.layout.pooled_side
        grids = embeddings.reshape(-1, side, side, embeddings.shape[-1])
        rows = [bilinear_resize(grid, pooled, pooled).reshape(-1, grid.shape[-1]) for grid in grids]
        return np.concatenate([*rows, self.newline[None]]).astype(np.float32)
