"""The optional video section: round trip, every bad value a ManifestError naming the field, the
video layout tied to its image layout, and the runtime refusing a layout its image parts cannot run."""
from __future__ import annotations

import copy

import pytest

from mmedge.errors import ManifestError
from mmedge.manifest import Manifest

from .manifest_helpers import manifest_error, set_path
from .test_manifest_audio import audio_bundle  # noqa: F401  (fixture)
from .test_manifest_qwen2vl import QWEN2VL

FRAMES = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "rescale_factor": 1 / 255,
          "resample": "bicubic", "resize": "torch-antialias"}
QWEN_VIDEO = {
    "marker": "<|video_pad|>", "marker_token_id": 151656,
    "layout": {"kind": "qwen2vl-frames", "min_pixels": 3136, "max_pixels": 602112, "video_pad_token": "<|video_pad|>",
               "tokens_per_second": 2.0},
    "sampling": {"rule": "qwen2vl", "num_frames": None, "fps": 2.0, "min_frames": 4, "max_frames": 768, "frame_multiple": 2},
    "frames": FRAMES,
}


@pytest.fixture
def qwen(valid):
    valid["image"]["layout"] = dict(QWEN2VL)
    valid["image"]["marker"] = "<|image_pad|>"
    valid["video"] = copy.deepcopy(QWEN_VIDEO)
    return valid


def test_video_section_round_trips(qwen):
    m = Manifest.from_dict(qwen)
    assert m.video.layout.kind == "qwen2vl-frames" and m.video.sampling.fps == 2.0
    assert m.to_dict()["video"] == QWEN_VIDEO
    assert Manifest.from_json(m.to_json()).video == m.video
    del qwen["video"]
    assert Manifest.from_dict(qwen).video is None and "video" not in Manifest.from_dict(qwen).to_dict()


@pytest.mark.parametrize("path, value, message", [
    ("video.marker", "", "video.marker: expected 1..256 characters"),
    ("video.marker", "<|image_pad|>", "must differ from the image marker"),
    ("video.marker_token_id", -1, "video.marker_token_id: expected a token id >= 0"),
    ("video.marker_token_id", "6", "video.marker_token_id: expected int, found str"),
    ("video.layout.kind", "frames-of-doom", "video.layout.kind: 'frames-of-doom' is not a video layout this mmedge knows"),
    ("video.layout.kind", "pooled-frames", "builds on the 'anyres' image layout, the bundle's image layout is 'qwen2vl-patches'"),
    ("video.layout.min_pixels", 0, "video.layout.min_pixels: expected 1..268435456"),
    ("video.layout.max_pixels", 100, "video.layout.min_pixels: 3136 exceeds max_pixels 100"),
    ("video.layout.tokens_per_second", -1, "video.layout.tokens_per_second: expected a positive number or null"),
    ("video.layout.tokens_per_second", float("nan"), "video.layout.tokens_per_second: expected a positive number"),
    ("video.layout.video_pad_token", "", "video.layout.video_pad_token: expected a token's text"),
    ("video.sampling.rule", "random", "video.sampling.rule: expected one of ['uniform', 'qwen2vl']"),
    ("video.sampling.num_frames", 8, "video.sampling: num_frames and fps exclude each other"),
    ("video.sampling.num_frames", 0, "video.sampling.num_frames: expected 1..65536 or null"),
    ("video.sampling.fps", 0, "video.sampling.fps: expected a positive number or null"),
    ("video.sampling.min_frames", 800, "video.sampling.min_frames: 800 exceeds max_frames 768"),
    ("video.sampling.frame_multiple", 0, "video.sampling.frame_multiple: expected 1..16"),
    ("video.frames.image_std", [0.5, 0, 0.5], "video.frames.image_std: a zero would divide by zero"),
    ("video.frames.image_mean", [0.5, 0.5], "video.frames.image_mean: expected 3 finite numbers"),
    ("video.frames.resample", "lanczos", "video.frames.resample: expected one of ['bicubic', 'bilinear']"),
    ("video.frames.resize", "pil", "video.frames.resize: expected one of ['torch-antialias']"),
    ("video.frames.rescale_factor", 0, "video.frames.rescale_factor: expected a positive number"),
    ("video", [], "video: expected a JSON object, found list"),
])
def test_bad_video_values(qwen, path, value, message):
    set_path(qwen, path, value)
    assert message in manifest_error(qwen)


@pytest.mark.parametrize("missing", ["marker", "marker_token_id", "layout", "sampling", "frames"])
def test_video_required_fields(qwen, missing):
    del qwen["video"][missing]
    assert f"video.{missing}: required field is missing" in manifest_error(qwen)


def test_audio_bundles_take_no_video(audio_bundle):
    audio_bundle["video"] = copy.deepcopy(QWEN_VIDEO)
    assert "an audio bundle has a video section" in manifest_error(audio_bundle)


def test_runtime_refuses_frames_the_tiles_cannot_take(valid):
    """OneVision's frames must be the encoder's tile: a manifest saying otherwise is refused at open."""
    from mmedge.runtime.layouts import image_layout, video_layout

    valid["image"]["layout"] = {"kind": "anyres", "tile_size": 336, "grid_pinpoints": [[336, 672]], "feature_side": 24,
                                "image_newline": [0.0] * valid["image"]["embedding_dim"]}
    valid["image"]["tokens_per_image"] = 576
    valid["preprocess"]["image"].update({"resize_mode": "exact", "size": {"height": 336, "width": 336}, "crop_size": None})
    valid["video"] = {**copy.deepcopy(QWEN_VIDEO), "marker": "<video>",
                      "layout": {"kind": "pooled-frames", "frame_size": 384, "feature_side": 24},
                      "sampling": {"rule": "uniform", "num_frames": None, "fps": None, "min_frames": 1, "max_frames": 1024,
                                   "frame_multiple": 1}}
    m = Manifest.from_dict(valid)
    with pytest.raises(ManifestError, match="frame_size 384 / feature_side 24 differ from the image tiles' .336 / 24."):
        video_layout(m.video, image_layout(m.image_preprocess, m.image))
