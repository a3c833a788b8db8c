"""The runtime side of video layouts: one video -> frames -> encoder calls, prompt text, rows.

A video layout builds on the bundle's image layout (the same encoder and projector, the same
patch order); each manifest video layout kind (`mmedge/video_spec.py`) has one implementation,
registered by kind. Frame sampling follows the manifest's rule: the HF video processor's
defaults, or the count / rate the user asks for (`FrameRequest`), exactly as HF samples them.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Union

import numpy as np

from mmedge.errors import VideoError
from mmedge.video_spec import VideoSlotSpec

from ..video import (MAX_SAMPLED_FRAMES, Video, VideoMetadata, qwen2vl_indices, read_video, uniform_indices,
                     video_from_folder, video_from_frames)
from .base import ImageLayout, KindRegistry, PreparedImage, PromptHooks

# A video file, a folder of frame images, decoded frames (uint8 [N, H, W, 3] or a list), or a `Video`.
VideoSource = Union[str, os.PathLike, Video, np.ndarray, list]


@dataclass(frozen=True)
class FrameRequest:
    """Which frames to take from a video: a count or a rate (frames per second of video time);
    neither: the bundle's defaults (HF's video processor defaults)."""

    num_frames: int | None = None
    fps: float | None = None

    def __post_init__(self) -> None:
        if self.num_frames is not None and self.fps is not None:
            raise VideoError("give a frame count or a frame rate for the video, not both (HF's video processors refuse both)")
        if self.num_frames is not None and not 1 <= self.num_frames <= MAX_SAMPLED_FRAMES:
            raise VideoError(f"the frame count must be in 1 .. {MAX_SAMPLED_FRAMES}, got {self.num_frames}")
        if self.fps is not None and not (0 < self.fps <= 1000):
            raise VideoError(f"the frame rate must be in (0, 1000] frames per second, got {self.fps}")


class VideoLayout(PromptHooks, ABC):
    kind: ClassVar[str]

    def __init__(self, spec: VideoSlotSpec, image_layout: ImageLayout):
        self.spec, self.image_layout = spec, image_layout
        self.embedding_dim = image_layout.slot.embedding_dim

    # -- sampling ------------------------------------------------------------------------------
    def sample(self, metadata: VideoMetadata, request: FrameRequest = FrameRequest()) -> np.ndarray:
        """Frame numbers to take: the request, else the manifest's defaults, by the manifest's rule."""
        s = self.spec.sampling
        num_frames, fps = ((request.num_frames, request.fps) if request.num_frames or request.fps
                           else (s.num_frames, s.fps))
        if s.rule == "qwen2vl":
            return qwen2vl_indices(metadata.total_frames, metadata.fps, num_frames=num_frames, fps=fps,
                                   temporal_patch_size=s.frame_multiple, min_frames=s.min_frames, max_frames=s.max_frames)
        return uniform_indices(metadata.total_frames, num_frames=num_frames, fps=fps, video_fps=metadata.fps)

    def select(self, video: Video, request: FrameRequest = FrameRequest()) -> Video:
        """A video holding all its frames, sampled as the request / defaults ask; a video already
        sampled (fewer frames than its metadata counts, e.g. a decoded file) is taken as it is."""
        if len(video.frames) != video.metadata.total_frames:
            if request != FrameRequest():
                raise VideoError(f"this video holds {len(video.frames)} frames sampled from {video.metadata.total_frames}; "
                                 "sample it once: pass the file or all its frames with the frame count / rate")
            return video
        indices = self.sample(video.metadata, request)
        return Video(frames=video.frames[indices], indices=video.indices[indices], metadata=video.metadata)

    def load(self, source: VideoSource, request: FrameRequest = FrameRequest()) -> Video:
        """The sampled frames of a video file (sampled while decoding), a frame folder, or frames."""
        if isinstance(source, Video):
            return self.select(source, request)
        if isinstance(source, (np.ndarray, list, tuple)):
            return self.select(video_from_frames(source), request)
        path = Path(source)
        if path.is_dir():
            return self.select(video_from_folder(path), request)
        return read_video(path, lambda metadata: self.sample(metadata, request))

    # -- frames -> encoder calls -> rows -------------------------------------------------------------
    @abstractmethod
    def prepare(self, video: Video) -> PreparedImage:
        ...

    @abstractmethod
    def projected_shape(self, prepared: PreparedImage) -> tuple[int, ...]:
        """The projector outputs' shape, all calls concatenated on axis 0."""

    @abstractmethod
    def assemble(self, prepared: PreparedImage, embeddings: np.ndarray) -> np.ndarray:
        """The projector outputs -> [n_rows, D] in prompt order."""


_VIDEO_LAYOUTS = KindRegistry("video.layout.kind")
register_video_layout = _VIDEO_LAYOUTS.register


def video_layout(spec: VideoSlotSpec, image_layout: ImageLayout) -> VideoLayout:
    return _VIDEO_LAYOUTS[spec.layout.kind](spec, image_layout)
