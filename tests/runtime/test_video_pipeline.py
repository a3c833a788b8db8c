"""Videos through the runtime around the parity tests: `mmedge run --video` prints what the pipeline
generates (a file, a folder of frames), `inspect` shows the video section, video runs need no
torch, and bad video requests are named errors before any work."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mmedge.errors import PromptError, VideoError
from mmedge.runtime.layouts import FrameRequest
from mmedge.runtime.pipeline import GenerationParams, Pipeline, RuntimeOptions
from mmedge.runtime.video import video_from_frames

from ..video_helpers import source_frames, write_video
from .test_torch_free import BLOCKER

PRESET = "onevision-siglip-qwen2"
MMEDGE = [sys.executable, "-m", "mmedge.cli"]
PARAMS = GenerationParams(max_new_tokens=12, min_new_tokens=12)


@pytest.fixture(scope="module")
def video_bundle(bundles):
    return bundles(PRESET)[0]


@pytest.fixture(scope="module")
def video_pipe(video_bundle):
    pipe = Pipeline(video_bundle, RuntimeOptions(exact=True, n_ctx=2048))
    yield pipe
    pipe.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    frames = source_frames(10)
    folder = root / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:03d}.png")
    return write_video(root / "clip.mov", "png", "rgb24", frames, rate=5), folder


def test_run_video_prints_the_pipeline_text(video_pipe, video_bundle, clip):
    path, folder = clip
    expected = video_pipe.generate([], "What happens?", GenerationParams(max_new_tokens=16), videos=[path],
                                   frames=FrameRequest(num_frames=4)).text
    assert expected.strip()
    for source in (path, folder):  # a folder of frame images is a video too
        proc = subprocess.run([*MMEDGE, "run", str(video_bundle), "--video", str(source), "--frames", "4", "--prompt",
                               "What happens?", "--max-tokens", "16", "--exact", "--ctx", "2048"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout == expected + "\n"
    inspect = subprocess.run([*MMEDGE, "inspect", str(video_bundle)], capture_output=True, text=True, timeout=120)
    assert "videos   marker '<video>'" in inspect.stdout and "pooled-frames" in inspect.stdout


def test_frame_requests_sample_as_asked(video_pipe, clip):
    """--frames 4 of 10 takes frames 0, 2, 5, 7 (transformers' uniform rule); --video-fps 1 of a
    5-fps clip takes 2 frames (int(10 / 5 * 1))."""
    path, _ = clip
    assert video_pipe.video_layout.load(path, FrameRequest(num_frames=4)).indices.tolist() == [0, 2, 5, 7]
    assert video_pipe.video_layout.load(path, FrameRequest(fps=1.0)).indices.tolist() == [0, 5]
    assert len(video_pipe.video_layout.load(path).frames) == 10  # the bundle's default: every frame (HF's)


def test_video_runs_without_torch(video_pipe, video_bundle, clip):
    script = BLOCKER.replace(
        "r = pipe.generate([synthetic_photo(90, 70, seed=3)], ",
        "from mmedge.runtime.layouts import FrameRequest\n"
        f"r = pipe.generate([], videos=[{str(clip[0])!r}], frames=FrameRequest(num_frames=3), prompt=").replace(
        '"What is this?", GenerationParams', '"What is this?", params=GenerationParams')
    assert "FrameRequest(num_frames=3)" in script
    proc = subprocess.run([sys.executable, "-c", script, str(video_bundle)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["torch_loaded"] is False
    expected = video_pipe.generate([], "What is this?", PARAMS, videos=[clip[0]], frames=FrameRequest(num_frames=3)).tokens
    assert out["tokens"] == expected and len(expected) == 12


def test_video_to_a_bundle_without_videos_is_refused(pipeline, clip):
    with pytest.raises(PromptError, match="takes no videos"):
        pipeline.generate([], "What happens?", PARAMS, videos=[clip[0]])


@pytest.mark.parametrize("prompt, n_videos, message", [
    ("<video> and <video>", 1, r"2 video marker\(s\) '<video>' but 1 video\(s\)"),
    ("<image> <video>", 1, r"1 image marker\(s\) '<image>' but 0 image\(s\)"),
    ("plain", 0, None),
])
def test_video_markers_must_match_the_videos(video_pipe, prompt, n_videos, message):
    if message is None:
        assert "<video>" not in video_pipe.format(prompt, 0, n_videos=n_videos)
        return
    with pytest.raises(PromptError, match=message):
        video_pipe.format(prompt, 0, n_videos=n_videos)


def test_bad_frame_requests_are_refused(video_pipe, clip):
    with pytest.raises(VideoError, match="not both"):
        FrameRequest(num_frames=4, fps=1.0)
    with pytest.raises(VideoError, match="frame count must be in 1"):
        FrameRequest(num_frames=0)
    with pytest.raises(VideoError, match="frame rate must be in"):
        FrameRequest(fps=-2.0)
    with pytest.raises(VideoError, match="exceeds|more frames|has only"):
        video_pipe.video_layout.load(clip[0], FrameRequest(num_frames=50))
    sampled = video_pipe.video_layout.load(clip[0], FrameRequest(num_frames=4))
    with pytest.raises(VideoError, match="sample it once"):
        video_pipe.video_layout.load(sampled, FrameRequest(num_frames=2))
    with pytest.raises(VideoError, match="frame rate"):  # frames in memory have no rate to sample by
        video_pipe.video_layout.load(np.stack(source_frames(4)), FrameRequest(fps=1.0))


def test_cli_refuses_bad_video_arguments(video_bundle, clip, tmp_path):
    cases = [
        (["--video", str(clip[0]), "--frames", "3", "--video-fps", "1"], "not both"),
        (["--video", str(tmp_path / "none.mp4")], "no such file"),
        (["--video", str(clip[0]), "--frames", "-1"], "frame count must be in 1"),
    ]
    for extra, message in cases:
        proc = subprocess.run([*MMEDGE, "run", str(video_bundle), *extra, "--prompt", "x"], capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 2 and message in proc.stderr, (extra, proc.stderr[-1500:])


def test_a_sampled_video_keeps_its_frames(video_pipe):
    """A `Video` holding all its frames is sampled by the request; its rows follow its frame count."""
    video = video_from_frames(source_frames(6))
    prepared = video_pipe.prepare_videos([video], FrameRequest(num_frames=3))[0]
    side = video_pipe.manifest.video.layout.pooled_side
    assert prepared.n_rows == 3 * side**2 + 1 and prepared.info["frame_indices"].tolist() == [0, 2, 4]
