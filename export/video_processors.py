"""A checkpoint's video processor settings, read as data (its classes need torchvision).

transformers' video processors (LlavaOnevisionVideoProcessor, Qwen2VLVideoProcessor) cannot be
built without torchvision, which mmedge does not install, so their settings are read from
`video_preprocessor_config.json` over each class's own defaults; the defaults below are those
class attributes as transformers 5.24 declares them (the classes cannot be imported to read them).
A checkpoint without the file gets exactly what AutoVideoProcessor would build: the defaults.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from mmedge.errors import UnsupportedConfigError
from mmedge.video_spec import FramePreprocess, FrameSampling

from .checkpoint import read_json_object

VIDEO_PROCESSOR_FILE = "video_preprocessor_config.json"
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# PIL resampling numbers -> the filters torch's antialiased uint8 resize has (HF maps them so).
_FILTERS = {2: "bilinear", 3: "bicubic"}

# Class defaults, transformers 5.24 (models/*/video_processing_*.py and video_processing_utils.py).
DEFAULTS = {
    "LlavaOnevisionVideoProcessor": {
        "resample": 3, "image_mean": OPENAI_CLIP_MEAN, "image_std": OPENAI_CLIP_STD, "rescale_factor": 1 / 255,
        "size": {"height": 384, "width": 384}, "do_resize": True, "do_rescale": True, "do_normalize": True,
        "do_center_crop": None, "do_sample_frames": False, "num_frames": None, "fps": None,
    },
    "Qwen2VLVideoProcessor": {
        "resample": 3, "image_mean": OPENAI_CLIP_MEAN, "image_std": OPENAI_CLIP_STD, "rescale_factor": 1 / 255,
        "size": {"shortest_edge": 128 * 28 * 28, "longest_edge": 28 * 28 * 768}, "do_resize": True,
        "do_rescale": True, "do_normalize": True, "do_center_crop": None, "do_sample_frames": False,
        "num_frames": None, "fps": None, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
        "min_frames": 4, "max_frames": 768, "cap_pixels_per_frame": None, "max_video_tokens": 128000,
    },
}


@dataclass(frozen=True)
class VideoProcessorSettings:
    values: dict
    source: str  # the file read, or "class defaults"

    def __getitem__(self, key: str):
        return self.values[key]

    def frames(self) -> FramePreprocess:
        v = self.values
        if not (v["do_resize"] and v["do_rescale"] and v["do_normalize"]) or v.get("do_center_crop"):
            raise UnsupportedConfigError(f"{self.source}: mmedge reproduces video processors that resize, rescale and "
                                         "normalize without a center crop; this one sets do_resize / do_rescale / "
                                         "do_normalize false or do_center_crop true")
        resample = int(v["resample"])
        if resample not in _FILTERS:
            raise UnsupportedConfigError(f"{self.source}: resample={resample} is not a filter mmedge reproduces for "
                                         f"video frames ({sorted(_FILTERS)}: bilinear, bicubic)")
        return FramePreprocess(image_mean=_three(v["image_mean"], "image_mean", self.source),
                               image_std=_three(v["image_std"], "image_std", self.source),
                               rescale_factor=float(v["rescale_factor"]), resample=_FILTERS[resample])

    def sampling(self, rule: str, **bounds) -> FrameSampling:
        """The frames HF takes by default: with do_sample_frames, its num_frames / fps; else all."""
        v = self.values
        num_frames, fps = (v.get("num_frames"), v.get("fps")) if v.get("do_sample_frames") else (None, None)
        if num_frames is not None and fps is not None:
            fps = None  # the HF samplers take num_frames first when both come from the config
        return FrameSampling(rule=rule, num_frames=None if num_frames is None else int(num_frames),
                             fps=None if fps is None else float(fps), **bounds)


def _three(values, name: str, source: str) -> tuple[float, float, float]:
    if (not isinstance(values, (list, tuple)) or len(values) != 3
            or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in values)):
        raise UnsupportedConfigError(f"{source}: {name} must be 3 numbers, found {values!r}")
    return tuple(float(x) for x in values)


def read_video_processor(path: str | Path, class_name: str) -> VideoProcessorSettings:
    """`class_name`'s defaults overridden by the checkpoint's video_preprocessor_config.json.
    Qwen2-VL's legacy `min_pixels` / `max_pixels` keys override `size` as its __init__ does."""
    file = Path(path) / VIDEO_PROCESSOR_FILE
    values = dict(DEFAULTS[class_name])
    if not file.is_file():
        return VideoProcessorSettings(values, "class defaults")
    raw = read_json_object(file)
    found = raw.get("video_processor_type")
    if found is not None and found.removesuffix("Fast") != class_name:
        raise UnsupportedConfigError(f"{file}: video_processor_type {found!r}, expected {class_name!r}")
    values.update({k: v for k, v in raw.items() if k in values or k in ("min_pixels", "max_pixels")})
    size = dict(values["size"])
    for legacy, key in (("min_pixels", "shortest_edge"), ("max_pixels", "longest_edge")):
        if values.pop(legacy, None) is not None:
            size[key] = int(raw[legacy])
    values["size"] = size
    return VideoProcessorSettings(values, str(file))
