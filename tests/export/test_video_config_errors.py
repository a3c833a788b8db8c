"""Video processor settings mmedge does not reproduce are refused at load with
UnsupportedConfigError (CheckpointError for an unreadable file), naming the file and the setting,
before any weight is read; settings read as data equal the class defaults where the file is silent."""
from __future__ import annotations

import json
import shutil

import pytest

from mmedge.errors import CheckpointError, UnsupportedConfigError
from mmedge.export.families import family_for_architecture
from mmedge.export.video_processors import DEFAULTS, VIDEO_PROCESSOR_FILE, read_video_processor


def _edited(checkpoints, tmp_path, preset, change):
    folder = tmp_path / preset
    shutil.copytree(checkpoints(preset), folder)
    path = folder / VIDEO_PROCESSOR_FILE
    if change is None:
        path.unlink()
    elif isinstance(change, str):
        path.write_text(change)
    else:
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))
    for weights in folder.glob("*.safetensors"):  # proves the refusal comes before the weights are read
        weights.write_bytes(b"not safetensors")
    return folder


def _load(folder):
    arch = json.loads((folder / "config.json").read_text())["architectures"][0]
    return family_for_architecture(arch).load(str(folder))


@pytest.mark.parametrize("preset, change, error, message", [
    ("onevision-siglip-qwen2", lambda d: d.update(size={"height": 48, "width": 48}), UnsupportedConfigError,
     "video frames are resized to {'height': 48, 'width': 48}, but the vision tower takes 32x32 tiles"),
    ("onevision-siglip-qwen2", None, UnsupportedConfigError,  # class defaults: 384-px frames for a 32-px tower
     "class defaults: video frames are resized to {'height': 384, 'width': 384}"),
    ("onevision-siglip-qwen2", lambda d: d.update(resample=1), UnsupportedConfigError,
     "resample=1 is not a filter mmedge reproduces for video frames"),
    ("onevision-siglip-qwen2", lambda d: d.update(do_center_crop=True), UnsupportedConfigError, "without a center crop"),
    ("onevision-siglip-qwen2", "{not json", CheckpointError, "video_preprocessor_config.json: unreadable"),
    ("qwen2vl-tiny", lambda d: d.update(cap_pixels_per_frame=True), UnsupportedConfigError,
     "cap_pixels_per_frame=true (a per-video pixel budget) is not converted"),
    ("qwen2vl-tiny", lambda d: d.update(temporal_patch_size=1), UnsupportedConfigError,
     "(patch_size, temporal_patch_size, merge_size) (8, 1, 2) differ from the vision model's (8, 2, 2)"),
    ("qwen25vl-tiny", lambda d: d.update(video_processor_type="LlavaOnevisionVideoProcessor"), UnsupportedConfigError,
     "video_processor_type 'LlavaOnevisionVideoProcessor', expected 'Qwen2VLVideoProcessor'"),
    ("qwen25vl-tiny", lambda d: d.update(image_mean=[0.5, 0.5]), UnsupportedConfigError, "image_mean must be 3 numbers"),
])
def test_unsupported_video_settings_are_refused(checkpoints, tmp_path, preset, change, error, message):
    folder = _edited(checkpoints, tmp_path, preset, change)
    with pytest.raises(error) as e:
        _load(folder)
    assert message in str(e.value)


def test_settings_fall_back_to_the_class_defaults(checkpoints, tmp_path):
    """Qwen2-VL's legacy min_pixels / max_pixels keys override `size`, as its __init__ does."""
    folder = _edited(checkpoints, tmp_path, "qwen2vl-tiny", lambda d: d.clear() or d.update(min_pixels=1024, max_pixels=4096))
    settings = read_video_processor(folder, "Qwen2VLVideoProcessor")
    assert settings["size"] == {"shortest_edge": 1024, "longest_edge": 4096}
    for key in ("patch_size", "temporal_patch_size", "merge_size", "min_frames", "max_frames", "image_mean", "resample"):
        assert settings[key] == DEFAULTS["Qwen2VLVideoProcessor"][key]
    frames = read_video_processor(folder, "Qwen2VLVideoProcessor").sampling("qwen2vl", min_frames=4, max_frames=768)
    assert (frames.num_frames, frames.fps) == (None, None)  # do_sample_frames is off: every frame, as HF
    sampled = _edited(checkpoints, tmp_path / "b", "qwen2vl-tiny", lambda d: d.update(do_sample_frames=True, fps=2.0))
    assert read_video_processor(sampled, "Qwen2VLVideoProcessor").sampling("qwen2vl").fps == 2.0
