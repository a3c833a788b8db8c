"""Qwen2-VL / Qwen2.5-VL video, step for step as the video processor, processor and model do it.

1. One size for all frames: smart_resize of the frames' size with the video's min/max pixels;
   torch's antialiased resize on uint8 and the fused normalization (`runtime/frames.py`).
2. Frames grouped by temporal_patch_size, the last frame repeated to fill the last group;
   each group is patched like an image (`patchify_frames`: merge group by merge group, each patch
   flattened (C, T, py, px)).
3. One encoder call per group: the vision model attends within a frame group (its cu_seqlens
   split the video by grid_t), rotary ids and Qwen2.5-VL's windows repeat per group, so per-group
   calls give the model's rows exactly; windows are put back in order after the projector.
4. M-RoPE: group g's rows sit at (g * interval, row, column) from the video's start position,
   interval 1 (Qwen2-VL) or tokens_per_second * temporal_patch_size / sampled fps (Qwen2.5-VL),
   multiplied in float32 and truncated, as get_vision_position_ids does. The text after the video
   resumes after its largest position, as Qwen's own code (and transformers up to 5.2) does;
   transformers 5.3 .. 5.24 resume at start + max(grid_h, grid_w) / merge instead, which differs
   when the temporal positions run past it (transformers issue #45381), and which llama.cpp cannot
   represent (a sequence's positions never step back there).
"""
from __future__ import annotations

import numpy as np

from mmedge.errors import ManifestError
from mmedge.video_spec import Qwen2VLFrames

from ..frames import frame_pixels
from ..video import Video
from .base import PIXEL_INPUT, PreparedImage
from .qwen2vl import Qwen2VLPatchesLayout, in_group_order, mrope_offsets, patch_inputs, patchify_frames, smart_resize
from .video import VideoLayout, register_video_layout


def temporal_offsets(groups: int, interval: float | None) -> np.ndarray:
    """Each group's temporal M-RoPE offset: g, or trunc(float32(g) * float32 interval)."""
    if interval is None:
        return np.arange(groups, dtype=np.int64)
    return (np.arange(groups, dtype=np.float32) * np.float32(interval)).astype(np.int64)


@register_video_layout
class Qwen2VLFramesLayout(VideoLayout):
    kind = "qwen2vl-frames"

    def __init__(self, spec, image_layout):
        super().__init__(spec, image_layout)
        if not isinstance(image_layout, Qwen2VLPatchesLayout):
            raise ManifestError("video.layout: qwen2vl-frames needs the qwen2vl-patches image layout")
        self.layout: Qwen2VLFrames = spec.layout
        self.patches = image_layout.spec

    def interval(self, video: Video) -> float | None:
        """The temporal position step between frame groups (None: 1, Qwen2-VL)."""
        tps = self.layout.tokens_per_second
        if tps is None:
            return None
        # The processor's second_per_grid_ts (float32 tensor) times tokens_per_second, in float32.
        seconds = np.float32(self.patches.temporal_patch_size / video.sampled_fps)
        return float(np.float32(np.float32(tps) * seconds))

    def prepare(self, video: Video) -> PreparedImage:
        p = self.patches
        height, width = video.frames.shape[1:3]
        h, w = smart_resize(height, width, p.factor, self.layout.min_pixels, self.layout.max_pixels)
        pixels = frame_pixels(video.frames, h, w, self.spec.frames)
        if pad := -len(pixels) % p.temporal_patch_size:
            pixels = np.concatenate([pixels, np.repeat(pixels[-1:], pad, axis=0)])
        groups = len(pixels) // p.temporal_patch_size
        grid_h, grid_w = h // p.patch_size, w // p.patch_size
        inputs, order = patch_inputs(p, grid_h, grid_w)
        unit = p.merge_size**2
        chunks = []
        for g in range(groups):
            patches = patchify_frames(pixels[g * p.temporal_patch_size:(g + 1) * p.temporal_patch_size], p.patch_size,
                                      p.merge_size)
            chunks.append({PIXEL_INPUT: patches if order is None else in_group_order(patches, order, unit), **inputs})
        per_group = grid_h * grid_w // unit
        spatial = mrope_offsets(grid_h, grid_w, p.merge_size)
        grid = np.tile(spatial, (1, groups))
        grid[0] = np.repeat(temporal_offsets(groups, self.interval(video)), per_group)
        n_rows = groups * per_group
        return PreparedImage(tiles=chunks[0][PIXEL_INPUT], text=self.layout.video_pad_token * n_rows, n_rows=n_rows,
                             info={"grid_thw": (groups, grid_h, grid_w), "window_order": order,
                                   "frame_indices": video.indices},
                             grid=grid, chunks=chunks, medium="video")

    def projected_shape(self, prepared: PreparedImage) -> tuple[int, ...]:
        return (prepared.n_rows, self.embedding_dim)

    def assemble(self, prepared: PreparedImage, embeddings: np.ndarray) -> np.ndarray:
        order = prepared.info["window_order"]
        if order is None:
            return embeddings
        groups = prepared.info["grid_thw"][0]
        by_group = embeddings.reshape(groups, len(order), -1)
        rows = np.empty_like(by_group)
        rows[:, order] = by_group  # within each group, the projector's j-th row is merge group order[j]
        return rows.reshape(embeddings.shape)
