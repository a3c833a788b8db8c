"""The manifest's image sections: `preprocess.image` (how an RGB image becomes encoder input, as
data) and `image` (how images enter the prompt: marker, token, layout, attention), and the check
that a `video` section fits the image slot its frames run through."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import ManifestError
from .image_layouts import LayoutSpec, SingleView, parse_layout
from .validation import get_field as _get
from .video_spec import VideoSlotSpec

# The resampling filters the runtime implements (PIL's), by name.
RESAMPLE_FILTERS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
# How the LLM attends over image positions (`image.attention`):
#   causal              every position sees only earlier ones (LLaVA);
#   bidirectional-image the positions of one image's run see each other both ways (Gemma 3);
#   prefix              the whole prompt, image and text, is one bidirectional prefix (PaliGemma).
ATTENTION_MODES = ("causal", "bidirectional-image", "prefix")


@dataclass(frozen=True)
class ImagePreprocessSpec:
    """How to turn an RGB image into the encoder's `pixel_values`, as data (no callables).

    resize_mode: "shortest_edge" (keep aspect, short side = size) or "exact" (to height x width).
    """

    resize_mode: str
    size: dict
    resample: str
    crop_size: dict | None
    rescale_factor: float | None
    image_mean: list[float] | None
    image_std: list[float] | None
    convert_rgb: bool = True
    layout: str = "NCHW"
    dtype: str = "float32"

    @classmethod
    def from_dict(cls, d: dict) -> "ImagePreprocessSpec":
        where = "preprocess.image"
        mode = _get(d, "resize_mode", str, where)
        if mode not in ("shortest_edge", "exact"):
            raise ManifestError(f"{where}.resize_mode: expected 'shortest_edge' or 'exact', found {mode!r}")
        size = _get(d, "size", dict, where)
        needed = ("shortest_edge",) if mode == "shortest_edge" else ("height", "width")
        for key in needed:
            value = _get(size, key, int, f"{where}.size")
            if not 1 <= value <= 8192:
                raise ManifestError(f"{where}.size.{key}: expected 1..8192, found {value}")
        crop = _get(d, "crop_size", (dict, type(None)), where, True, None)
        if crop is not None:
            for key in ("height", "width"):
                value = _get(crop, key, int, f"{where}.crop_size")
                if not 1 <= value <= 8192:
                    raise ManifestError(f"{where}.crop_size.{key}: expected 1..8192, found {value}")
        mean = _get(d, "image_mean", (list, type(None)), where, True, None)
        std = _get(d, "image_std", (list, type(None)), where, True, None)
        for name, values in (("image_mean", mean), ("image_std", std)):
            if values is not None and (len(values) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
                raise ManifestError(f"{where}.{name}: expected 3 numbers, found {values!r}")
        for name, values in (("image_mean", mean), ("image_std", std)):
            if values is not None and not all(math.isfinite(v) for v in values):
                raise ManifestError(f"{where}.{name}: expected finite numbers, found {values!r}")
        if std is not None and any(v == 0 for v in std):
            raise ManifestError(f"{where}.image_std: a zero would divide by zero")
        resample = _get(d, "resample", str, where)
        if resample not in RESAMPLE_FILTERS:
            raise ManifestError(f"{where}.resample: expected one of {list(RESAMPLE_FILTERS)}, found {resample!r}")
        rescale = _get(d, "rescale_factor", (int, float, type(None)), where, True, None)
        if rescale is not None and not (math.isfinite(rescale) and rescale > 0):
            raise ManifestError(f"{where}.rescale_factor: expected a positive number, found {rescale!r}")
        layout = _get(d, "layout", str, where, True, "NCHW")
        dtype = _get(d, "dtype", str, where, True, "float32")
        if (layout, dtype) != ("NCHW", "float32"):
            raise ManifestError(f"{where}: this mmedge produces NCHW float32 pixel values, the bundle asks {layout} {dtype}")
        return cls(
            resize_mode=mode,
            size=dict(size),
            resample=resample,
            crop_size=dict(crop) if crop else None,
            rescale_factor=rescale,
            image_mean=[float(v) for v in mean] if mean is not None else None,
            image_std=[float(v) for v in std] if std is not None else None,
            convert_rgb=_get(d, "convert_rgb", bool, where, True, True),
            layout=layout,
            dtype=dtype,
        )

    def output_hw(self) -> tuple[int, int]:
        if self.crop_size:
            return self.crop_size["height"], self.crop_size["width"]
        if self.resize_mode == "exact":
            return self.size["height"], self.size["width"]
        raise ManifestError("preprocess.image: shortest_edge resize without crop_size gives no fixed size")


@dataclass(frozen=True)
class ImageSlotSpec:
    """How images enter the prompt.

    `marker` is what the prompt holds once per image; the layout expands it (as the HF processor
    does, on the text) into image tokens (`marker_token_id`), whose positions take the image's
    embedding rows in order. `tokens_per_image` is the projector's rows per encoder input (a tile,
    for tiling layouts).
    """

    marker: str
    marker_token_id: int
    tokens_per_image: int
    embedding_dim: int
    layout: LayoutSpec = SingleView()
    attention: str = "causal"
    # The runtime divides image rows by this before injecting them: llama.cpp's gemma/gemma2 graphs
    # multiply every input row by sqrt(n_embd), HF scales only token embeddings (1.0: no scaling).
    embedding_divisor: float = 1.0

    @classmethod
    def from_dict(cls, d: dict) -> "ImageSlotSpec":
        where = "image"
        spec = cls(
            marker=_get(d, "marker", str, where),
            marker_token_id=_get(d, "marker_token_id", int, where),
            tokens_per_image=_get(d, "tokens_per_image", int, where),
            embedding_dim=_get(d, "embedding_dim", int, where),
            layout=parse_layout(d.get("layout"), f"{where}.layout"),
            attention=_get(d, "attention", str, where, True, "causal"),
            embedding_divisor=float(_get(d, "embedding_divisor", (int, float), where, True, 1.0)),
        )
        if spec.attention not in ATTENTION_MODES:
            raise ManifestError(f"image.attention: expected one of {list(ATTENTION_MODES)}, found {spec.attention!r}; upgrade mmedge")
        if not (math.isfinite(spec.embedding_divisor) and spec.embedding_divisor > 0):
            raise ManifestError(f"image.embedding_divisor: expected a positive number, found {d.get('embedding_divisor')!r}")
        if not spec.marker:
            raise ManifestError("image.marker: must not be empty")
        if spec.marker_token_id < 0:
            raise ManifestError(f"image.marker_token_id: expected a token id >= 0, found {spec.marker_token_id}")
        if not 1 <= spec.tokens_per_image <= 1 << 20 or not 1 <= spec.embedding_dim <= 1 << 20:
            raise ManifestError("image.tokens_per_image / embedding_dim: out of range (1 .. 2^20)")
        return spec


def video_section(raw: Any, image: ImageSlotSpec) -> VideoSlotSpec:
    """The manifest's `video` section, checked against the image slot it runs through."""
    video = VideoSlotSpec.from_dict(raw, image.layout.kind)
    if video.marker == image.marker or video.marker_token_id == image.marker_token_id:
        raise ManifestError(f"video: its marker {video.marker!r} (token {video.marker_token_id}) must differ from the image "
                            f"marker {image.marker!r} (token {image.marker_token_id}); re-export the bundle")
    if image.marker in video.marker or video.marker in image.marker:
        raise ManifestError(f"video.marker: {video.marker!r} and the image marker {image.marker!r} contain each other, "
                            "so the prompt's markers would be ambiguous; re-export the bundle")
    return video
