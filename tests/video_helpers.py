"""Test videos written by code (PyAV) and transformers' references for frame sampling and loading,
shared by the runtime's video tests and the families' video parity tests."""
from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import pytest
import skimage.data
import torch

N_FRAMES, WIDTH, HEIGHT, RATE = 30, 96, 64, 25


def source_frames(n: int = N_FRAMES) -> list[np.ndarray]:
    """Crops of a photograph sliding a few pixels per frame: every frame differs."""
    img = skimage.data.astronaut()
    return [np.ascontiguousarray(img[100 + 3 * i:100 + 3 * i + HEIGHT, 150 + 4 * i:150 + 4 * i + WIDTH]) for i in range(n)]


def write_video(path: Path, codec: str, pix_fmt: str, frames: list[np.ndarray], rate: int = RATE) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], pix_fmt
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())
    return path


def lossy_codec() -> str:
    for name in ("libx264", "h264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001 - any failure means "not this encoder"
            continue
    pytest.skip("no lossy video encoder in this PyAV build")


# --- the transformers references -------------------------------------------------------------------
def hf_metadata(total: int, fps: float | None):
    from transformers.video_utils import VideoMetadata as HFMetadata

    return HFMetadata(total_num_frames=total, fps=fps)


def qwen2vl_reference(metadata, num_frames=None, fps=None, temporal_patch_size=2, min_frames=4, max_frames=768):
    """Mirrors transformers 5.24 `Qwen2VLVideoProcessor.sample_frames` line for line (its module
    imports torchvision, which is not installable here, so it cannot be imported)."""
    if fps is not None and num_frames is not None:
        raise ValueError("`num_frames` and `fps` are mutually exclusive arguments, please use only one!")
    total_num_frames = metadata.total_num_frames
    if num_frames is not None:
        num_frames = round(num_frames / temporal_patch_size) * temporal_patch_size
    elif fps is not None:
        if metadata is None or metadata.fps is None:
            raise ValueError("no fps")
        max_frames = math.floor(min(max_frames, total_num_frames) / temporal_patch_size) * temporal_patch_size
        num_frames = total_num_frames / metadata.fps * fps
        num_frames = min(max(num_frames, min_frames), max_frames, total_num_frames)
        num_frames = math.floor(num_frames / temporal_patch_size) * temporal_patch_size
    if num_frames > total_num_frames:
        raise ValueError("Video can't be sampled.")
    if num_frames is not None:
        return torch.arange(0, total_num_frames, total_num_frames / num_frames).int()
    return torch.arange(0, total_num_frames).int()


def hf_load(path: Path, **kwargs):
    from transformers.video_utils import load_video

    return load_video(str(path), backend="pyav", **kwargs)
