"""The manifest's optional `video` section: how a video becomes frames, encoder calls and prompt rows.

Families whose HF processor takes videos (LLaVA-OneVision, Qwen2-VL, Qwen2.5-VL) run sampled
frames through the image bundle's own encoder and projector; this section says how, as data:

- `sampling`: which frames a video file gives when the user names no count (the HF video
  processor's defaults; `null` num_frames and fps: every frame, as HF does with
  do_sample_frames=False), and the rule used when the user asks for N frames or F per second
  ("uniform": transformers' default_sample_indices_fn; "qwen2vl": Qwen2VLVideoProcessor.sample_frames).
- `frames`: how each frame is resized and normalized. HF's video processors work on uint8 torch
  tensors: torch's antialiased resize (not PIL's), then rescale and normalize fused into one
  (x - 255*mean) / (255*std) in float32.
- `layout`: what the frames become (one kind per family; the runtime implements each kind in
  `mmedge/runtime/layouts/`).

The marker (`<video>`, `<|video_pad|>`) expands in the prompt text as the HF processor does;
its rows are filled with the video token (`marker_token_id`), in text order among the images.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from .errors import ManifestError
from .image_layouts import token_text
from .validation import get_field

SAMPLING_RULES = ("uniform", "qwen2vl")
FRAME_RESIZE = ("torch-antialias",)
FRAME_FILTERS = ("bicubic", "bilinear")


def _int(d: dict, key: str, where: str, low: int, high: int, optional: bool = False, default: Any = None):
    value = get_field(d, key, (int, type(None)) if optional else int, where, optional, default)
    if value is not None and not low <= value <= high:
        raise ManifestError(f"{where}.{key}: expected {low}..{high}{' or null' if optional else ''}, found {value}")
    return value


def _positive_float(d: dict, key: str, where: str, optional: bool = False):
    value = get_field(d, key, (int, float, type(None)) if optional else (int, float), where, optional, None)
    if value is not None and not (math.isfinite(value) and 0 < value <= 1e6):
        raise ManifestError(f"{where}.{key}: expected a positive number{' or null' if optional else ''}, found {value!r}")
    return None if value is None else float(value)


def _three(d: dict, key: str, where: str) -> tuple[float, float, float]:
    value = get_field(d, key, list, where)
    if len(value) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise ManifestError(f"{where}.{key}: expected 3 finite numbers, found {value!r}")
    return tuple(float(v) for v in value)


@dataclass(frozen=True)
class FrameSampling:
    rule: str
    num_frames: int | None = None  # the default count (None with fps None: every frame)
    fps: float | None = None  # the default frames per second of video time
    min_frames: int = 1  # qwen2vl: bounds of the count derived from fps
    max_frames: int = 1024
    frame_multiple: int = 1  # qwen2vl: counts are multiples of temporal_patch_size

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "FrameSampling":
        rule = get_field(d, "rule", str, where)
        if rule not in SAMPLING_RULES:
            raise ManifestError(f"{where}.rule: expected one of {list(SAMPLING_RULES)}, found {rule!r}; upgrade mmedge")
        spec = cls(rule=rule, num_frames=_int(d, "num_frames", where, 1, 1 << 16, optional=True),
                   fps=_positive_float(d, "fps", where, optional=True),
                   min_frames=_int(d, "min_frames", where, 1, 1 << 16), max_frames=_int(d, "max_frames", where, 1, 1 << 16),
                   frame_multiple=_int(d, "frame_multiple", where, 1, 16))
        if spec.num_frames is not None and spec.fps is not None:
            raise ManifestError(f"{where}: num_frames and fps exclude each other (HF's video processors refuse both)")
        if spec.min_frames > spec.max_frames:
            raise ManifestError(f"{where}.min_frames: {spec.min_frames} exceeds max_frames {spec.max_frames}")
        return spec


@dataclass(frozen=True)
class FramePreprocess:
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    rescale_factor: float = 1 / 255
    resample: str = "bicubic"
    resize: str = "torch-antialias"

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "FramePreprocess":
        spec = cls(image_mean=_three(d, "image_mean", where), image_std=_three(d, "image_std", where),
                   rescale_factor=_positive_float(d, "rescale_factor", where),
                   resample=get_field(d, "resample", str, where), resize=get_field(d, "resize", str, where))
        if spec.resample not in FRAME_FILTERS:
            raise ManifestError(f"{where}.resample: expected one of {list(FRAME_FILTERS)}, found {spec.resample!r}")
        if spec.resize not in FRAME_RESIZE:
            raise ManifestError(f"{where}.resize: expected one of {list(FRAME_RESIZE)}, found {spec.resize!r}; upgrade mmedge")
        if any(v == 0 for v in spec.image_std):
            raise ManifestError(f"{where}.image_std: a zero would divide by zero")
        return spec

    def to_dict(self) -> dict:
        return {**asdict(self), "image_mean": list(self.image_mean), "image_std": list(self.image_std)}


@dataclass(frozen=True)
class VideoLayoutSpec:
    kind: ClassVar[str]
    # The image layout kind this video layout builds on (its encoder inputs, its rows).
    image_layout: ClassVar[str]

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class PooledFrames(VideoLayoutSpec):
    """LLaVA-OneVision: every frame squashed to one encoder tile (frame_size x frame_size), encoded
    and projected like an image tile, its feature_side^2 rows pooled bilinearly to
    ceil(feature_side / 2)^2; the frames' rows one after another, then one `image_newline` row
    (the anyres image layout's) after the last frame."""

    kind: ClassVar[str] = "pooled-frames"
    image_layout: ClassVar[str] = "anyres"
    frame_size: int
    feature_side: int

    @property
    def pooled_side(self) -> int:
        return -(-self.feature_side // 2)

    def rows(self, n_frames: int) -> int:
        return n_frames * self.pooled_side**2 + 1

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "PooledFrames":
        return cls(frame_size=_int(d, "frame_size", where, 1, 8192), feature_side=_int(d, "feature_side", where, 1, 8192))


@dataclass(frozen=True)
class Qwen2VLFrames(VideoLayoutSpec):
    """Qwen2-VL / Qwen2.5-VL: frames resized to one size (HF's smart_resize of the first frame's size
    with the video's own min/max pixels), grouped by temporal_patch_size (the last frame repeated to
    fill the last group); each group is one encoder call with the image layout's patch order and ids
    (a still image is a group of one frame repeated). Rows take M-RoPE positions
    (temporal * interval, row, column); the interval is 1, or with `tokens_per_second` (Qwen2.5-VL)
    tokens_per_second * temporal_patch_size / sampled fps, truncated per group as HF does; the text
    after the video resumes after its largest position (Qwen's own rule). The marker expands to one
    `video_pad_token` per row."""

    kind: ClassVar[str] = "qwen2vl-frames"
    image_layout: ClassVar[str] = "qwen2vl-patches"
    min_pixels: int
    max_pixels: int
    video_pad_token: str
    tokens_per_second: float | None = None

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "Qwen2VLFrames":
        spec = cls(min_pixels=_int(d, "min_pixels", where, 1, 1 << 28), max_pixels=_int(d, "max_pixels", where, 1, 1 << 28),
                   video_pad_token=token_text(d, "video_pad_token", where),
                   tokens_per_second=_positive_float(d, "tokens_per_second", where, optional=True))
        if spec.min_pixels > spec.max_pixels:
            raise ManifestError(f"{where}.min_pixels: {spec.min_pixels} exceeds max_pixels {spec.max_pixels}")
        return spec


VIDEO_LAYOUTS: dict[str, type[VideoLayoutSpec]] = {cls.kind: cls for cls in (PooledFrames, Qwen2VLFrames)}


@dataclass(frozen=True)
class VideoSlotSpec:
    marker: str
    marker_token_id: int
    layout: VideoLayoutSpec
    sampling: FrameSampling
    frames: FramePreprocess

    @classmethod
    def from_dict(cls, d: Any, image_layout_kind: str) -> "VideoSlotSpec":
        where = "video"
        if not isinstance(d, dict):
            raise ManifestError(f"{where}: expected a JSON object, found {type(d).__name__}")
        raw_layout = get_field(d, "layout", dict, where)
        kind = get_field(raw_layout, "kind", str, f"{where}.layout")
        if kind not in VIDEO_LAYOUTS:
            raise ManifestError(f"{where}.layout.kind: {kind!r} is not a video layout this mmedge knows "
                                f"({sorted(VIDEO_LAYOUTS)}); upgrade mmedge")
        if VIDEO_LAYOUTS[kind].image_layout != image_layout_kind:
            raise ManifestError(f"{where}.layout.kind: {kind!r} builds on the {VIDEO_LAYOUTS[kind].image_layout!r} image "
                                f"layout, the bundle's image layout is {image_layout_kind!r}; re-export the bundle")
        layout = VIDEO_LAYOUTS[kind].from_dict(raw_layout, f"{where}.layout")
        spec = cls(marker=get_field(d, "marker", str, where), marker_token_id=get_field(d, "marker_token_id", int, where),
                   layout=layout, sampling=FrameSampling.from_dict(get_field(d, "sampling", dict, where), f"{where}.sampling"),
                   frames=FramePreprocess.from_dict(get_field(d, "frames", dict, where), f"{where}.frames"))
        if not spec.marker or len(spec.marker) > 256:
            raise ManifestError(f"{where}.marker: expected 1..256 characters, found {spec.marker!r}")
        if spec.marker_token_id < 0:
            raise ManifestError(f"{where}.marker_token_id: expected a token id >= 0, found {spec.marker_token_id}")
        return spec

    def to_dict(self) -> dict:
        return {"marker": self.marker, "marker_token_id": self.marker_token_id, "layout": self.layout.to_dict(),
                "sampling": asdict(self.sampling), "frames": self.frames.to_dict()}
