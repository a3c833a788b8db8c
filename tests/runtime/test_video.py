"""Video input: sampling equals transformers 5.24 (and torch's float32 arange) index for index,
decoded frames equal transformers' PyAV loader bit for bit, and every bad input is a VideoError."""
from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from mmedge.errors import VideoError
from mmedge.runtime import video as V
from tests.aten_capabilities import aten_capabilities, run_under
from tests.video_helpers import (HEIGHT, N_FRAMES, RATE, WIDTH, hf_load, hf_metadata, lossy_codec, qwen2vl_reference,
                                 source_frames, write_video)
from mmedge.runtime.video import (
    Video, VideoMetadata, qwen2vl_indices, qwen2vl_sampler, read_video, uniform_indices, uniform_sampler,
    video_from_folder, video_from_frames,
)

@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    frames = source_frames()
    paths = {
        "mov": write_video(root / "png.mov", "png", "rgb24", frames),       # lossless, stores its frame count
        "mkv": write_video(root / "ffv1.mkv", "ffv1", "bgr0", frames),      # lossless, Matroska stores no count
        "mp4": write_video(root / "lossy.mp4", lossy_codec(), "yuv420p", frames, rate=30),
    }
    for key in ("mp4", "mkv"):
        data = paths[key].read_bytes()
        (root / f"half.{key}").write_bytes(data[:len(data) // 2])
        paths[f"half_{key}"] = root / f"half.{key}"
    (root / "text.mp4").write_text("this is a text file, not a video\n" * 20)
    paths["text"] = root / "text.mp4"
    (root / "empty.mp4").write_bytes(b"")
    paths["empty"] = root / "empty.mp4"
    with wave.open(str(root / "tone.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(np.zeros(1600, np.int16).tobytes())
    paths["wav"] = root / "tone.wav"
    return paths


# --- sampling ------------------------------------------------------------------------------------
def test_uniform_indices_equal_transformers():
    from transformers.video_utils import default_sample_indices_fn

    for total in [*range(1, 70), 97, 301, 1000, 4321]:
        for video_fps in (None, 7.5, 24.0, 29.97, 30):
            requests = [dict(num_frames=n) for n in (1, 2, 3, 4, 7, 8, 16, 32, 64, 100, 768)]
            requests += [dict(fps=f) for f in (0.1, 0.5, 1, 2, 3.3, 24)] + [{}]
            for req in requests:
                try:
                    ref = default_sample_indices_fn(hf_metadata(total, video_fps), **req)
                except ValueError:
                    with pytest.raises(VideoError):
                        uniform_indices(total, video_fps=video_fps, **req)
                    continue
                ours = uniform_indices(total, video_fps=video_fps, **req)
                assert ours.dtype == np.int64 and np.array_equal(ours, ref), (total, video_fps, req)


def _qwen_pairs():
    pairs = [(t, n) for t in range(1, 121) for n in range(1, t + 3)]
    return pairs + [(7, 4), (1000, 768), (301, 6), (15, 13), (17, 14), (30, 26), (16383, 1024), (9999, 998)]


def test_qwen2vl_indices_num_frames_equal_transformers():
    quirks = 0
    for total, num in _qwen_pairs():
        try:
            ref = qwen2vl_reference(hf_metadata(total, 30.0), num_frames=num).numpy()
        except (ValueError, ZeroDivisionError):  # count above the video, or rounded to 0 frames
            with pytest.raises(VideoError):
                qwen2vl_indices(total, 30.0, num_frames=num)
            continue
        ours = qwen2vl_indices(total, 30.0, num_frames=num)
        # torch's arange is one longer than asked for ~1/4 of pairs, its extra element = total
        # (no such frame: transformers' PyAV loader skips it); ours drops it, the rest is identical.
        quirks += len(ref) > len(ours)
        assert set(ref[len(ours):].tolist()) <= {total}, (total, num)
        assert np.array_equal(ours, ref[:len(ours)]) and ours.dtype == np.int64, (total, num)
        assert len(ours) == round(num / 2) * 2
    assert quirks > 100  # the quirk is real, not hypothetical


def test_qwen2vl_indices_fps_equal_transformers():
    for total in [*range(1, 90), 150, 301, 1000, 5000, 40000]:
        for video_fps in (1.0, 10.0, 23.976, 25.0, 30.0, 60.0):
            for fps in (0.25, 0.5, 1.0, 2.0, 3.7, 24.0):
                for kw in ({}, dict(temporal_patch_size=1, min_frames=1, max_frames=32)):
                    try:
                        ref = qwen2vl_reference(hf_metadata(total, video_fps), fps=fps, **kw).numpy()
                    except (ValueError, ZeroDivisionError):
                        with pytest.raises(VideoError):
                            qwen2vl_indices(total, video_fps, fps=fps, **kw)
                        continue
                    ours = qwen2vl_indices(total, video_fps, fps=fps, **kw)
                    assert np.array_equal(ours, ref[ref < total]), (total, video_fps, fps, kw)


def _long_video_pairs() -> list[tuple[int, int]]:
    rng = np.random.default_rng(0)
    return [(1_541_231, 277), (2_554_262, 653), *zip(rng.integers(16_000, 3_000_000, 300).tolist(),
                                                     rng.integers(1, 1025, 300).tolist())]


# The child: torch's own arange and transformers' Qwen2-VL sampler (mirrored line for line) on
# long videos, where float32 is coarser than one frame and the kernel's arithmetic shows.
_TORCH_SAMPLING = """
sys.path.insert(0, sys.argv[1])
from tests.video_helpers import hf_metadata, qwen2vl_reference
pairs = json.loads(sys.argv[2])
aranges = [torch.arange(0, t, t / n).int().tolist() for t, n in pairs]
by_fps = {f"{t}@{fps}": qwen2vl_reference(hf_metadata(t, fps), fps=2.0).tolist()
          for t, fps in ((20_000, 25.0), (54_321, 29.97), (250_000, 30.0), (1_000_003, 60.0))}
print(json.dumps({"capability": _CAPABILITY, "aranges": aranges, "by_fps": by_fps}))
"""


@pytest.mark.parametrize("capability", aten_capabilities())
def test_long_video_sampling_equals_torch_under_every_kernel_set(capability):
    """Above ~16k frames torch's vectorised float32 arange (a float32 base per block of 8 lanes)
    and a plain float(step * i) differ; the emulation follows torch's kernel. That kernel has no
    AVX-512 variant: under ATEN_CPU_CAPABILITY default, avx2 and avx512 alike it is the same, so
    transformers picks the same frames on every x86 CPU, and so does mmedge (in numpy: on any CPU)."""
    pairs = _long_video_pairs()
    child = run_under(capability, _TORCH_SAMPLING, str(Path(__file__).parents[2]), json.dumps(pairs))
    differs_from_plain = 0
    for (total, num), ref in zip(pairs, child["aranges"], strict=True):
        assert V._torch_arange_int(total, total / num).tolist() == ref, (capability, total, num)
        differs_from_plain += ref != (np.arange(len(ref)) * (total / num)).astype(np.float32).astype(np.int32).tolist()
    assert differs_from_plain > 100  # the kernel's arithmetic really shows in these cases
    for key, ref in child["by_fps"].items():
        total, fps = key.split("@")
        ours = qwen2vl_indices(int(total), float(fps), fps=2.0)
        assert ours.tolist() == [i for i in ref if i < int(total)], (capability, key)


@pytest.mark.parametrize("call, message", [
    (lambda: uniform_indices(10, num_frames=11), "only 10"),
    (lambda: uniform_indices(10, num_frames=0), "at least 1"),
    (lambda: uniform_indices(10, num_frames=2.5), "whole number"),
    (lambda: uniform_indices(10, fps=0, video_fps=25), "positive"),
    (lambda: uniform_indices(10, fps=-1.0, video_fps=25), "positive"),
    (lambda: uniform_indices(10, fps=float("nan"), video_fps=25), "positive"),
    (lambda: uniform_indices(10, fps=2), "frame rate is unknown"),
    (lambda: uniform_indices(10, num_frames=2, fps=2, video_fps=25), "give one of them"),
    (lambda: uniform_indices(0, num_frames=1), "at least one frame"),
    (lambda: qwen2vl_indices(7, 25.0, num_frames=7), "rounded to a multiple of 2: 8"),
    (lambda: qwen2vl_indices(7, 25.0, num_frames=1), "gives 0 frames"),
    (lambda: qwen2vl_indices(1, 25.0, fps=2), "gives 0 frames"),
    (lambda: qwen2vl_indices(10, None, fps=2), "frame rate is unknown"),
    (lambda: qwen2vl_indices(10, 25.0, num_frames=4, fps=2), "give one of them"),
    (lambda: qwen2vl_indices(10, 25.0, num_frames=4, temporal_patch_size=0), "temporal_patch_size"),
])
def test_impossible_requests_are_refused(call, message):
    with pytest.raises(VideoError, match=message):
        call()


def test_sampled_fps_mirrors_transformers():
    from transformers.video_utils import VideoMetadata as HFMetadata

    frames = np.zeros((8, 16, 16, 3), np.uint8)
    for fps in (25.0, 29.97, None):
        indices = uniform_indices(30, num_frames=8)
        ours = Video(frames, indices, VideoMetadata(total_frames=30, fps=fps, width=16, height=16)).sampled_fps
        hf = HFMetadata(total_num_frames=30, fps=fps, frames_indices=indices).sampled_fps
        assert ours == hf and isinstance(ours, float)
    assert video_from_frames(list(frames)).sampled_fps == 24.0


# --- decoding files --------------------------------------------------------------------------------
def test_lossless_files_give_the_source_frames(videos):
    src = np.stack(source_frames())
    for key in ("mov", "mkv"):
        v = read_video(videos[key], uniform_sampler())
        assert v.frames.dtype == np.uint8 and v.frames.shape == (N_FRAMES, HEIGHT, WIDTH, 3)
        assert np.array_equal(v.frames, src) and np.array_equal(v.indices, np.arange(N_FRAMES))
        assert v.metadata == VideoMetadata(total_frames=N_FRAMES, fps=float(RATE), width=WIDTH, height=HEIGHT)
    with av.open(str(videos["mkv"])) as c:  # Matroska stores no frame count: read_video counted them
        assert c.streams.video[0].frames == 0
    picked = read_video(videos["mkv"], uniform_sampler(num_frames=7))
    assert np.array_equal(picked.frames, src[uniform_indices(N_FRAMES, num_frames=7)])


@pytest.mark.parametrize("key", ["mov", "mp4"])
@pytest.mark.parametrize("request_", [dict(num_frames=8), dict(num_frames=30), dict(fps=3), dict(fps=0.5), {}])
def test_frames_equal_transformers_uniform(videos, key, request_):
    ref, meta = hf_load(videos[key], **request_)
    ours = read_video(videos[key], uniform_sampler(**request_))
    assert ours.frames.dtype == ref.dtype and np.array_equal(ours.frames, ref)  # bit for bit
    assert np.array_equal(ours.indices, meta.frames_indices)
    assert ours.metadata.total_frames == meta.total_num_frames and ours.metadata.fps == meta.fps
    assert ours.sampled_fps == meta.sampled_fps


@pytest.mark.parametrize("key", ["mov", "mp4"])
@pytest.mark.parametrize("request_", [dict(num_frames=26), dict(num_frames=8), dict(fps=2), dict(fps=7.3)])
def test_frames_equal_transformers_qwen2vl(videos, key, request_):
    """num_frames=26 of 30 is a pair where torch's arange has the extra index 30."""
    ref, meta = hf_load(videos[key], sample_indices_fn=lambda metadata, **_: qwen2vl_reference(metadata, **request_))
    ours = read_video(videos[key], qwen2vl_sampler(**request_))
    assert np.array_equal(ours.frames, ref)
    hf_indices = meta.frames_indices.numpy()
    assert np.array_equal(ours.indices, hf_indices[hf_indices < ours.metadata.total_frames])


def test_sampler_answers_are_checked(videos):
    for bad, message in [(lambda m: np.array([0, 30]), "within 0..29"), (lambda m: np.array([3, 1]), "must increase"),
                         (lambda m: np.array([-1, 2]), "must increase"), (lambda m: np.array([], np.int64), "non-empty"),
                         (lambda m: np.array([0.5]), "integer"), (lambda m: np.arange(V.MAX_SAMPLED_FRAMES + 1), "limit")]:
        with pytest.raises(VideoError, match=message):
            read_video(videos["mov"], bad)
    with pytest.raises(VideoError, match="only 30"):
        read_video(videos["mov"], uniform_sampler(num_frames=31))


@pytest.mark.parametrize("key, message", [
    ("text", "not a video file"), ("empty", "empty"), ("half_mp4", "truncated"), ("half_mkv", "truncated"),
    ("wav", "no video stream"),
])
def test_bad_files_are_refused(videos, key, message):
    with pytest.raises(VideoError, match=message) as e:
        read_video(videos[key], uniform_sampler())
    assert str(videos[key]) in str(e.value)


def test_missing_paths_and_folders_are_refused(videos, tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        read_video(tmp_path / "nope.mp4", uniform_sampler())
    with pytest.raises(VideoError, match="is a folder"):
        read_video(tmp_path, uniform_sampler())


def test_frame_size_limits_apply_to_video(videos, monkeypatch):
    monkeypatch.setattr("mmedge.runtime.images.MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(VideoError, match="exceeds the limit"):
        read_video(videos["mov"], uniform_sampler(num_frames=2))
    monkeypatch.setattr(V, "MAX_SAMPLED_PIXELS", 5 * WIDTH * HEIGHT)
    monkeypatch.setattr("mmedge.runtime.images.MAX_IMAGE_PIXELS", 64_000_000)
    with pytest.raises(VideoError, match="sample fewer frames"):
        read_video(videos["mov"], uniform_sampler(num_frames=6))


def test_missing_pyav_says_what_to_install(videos, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    with pytest.raises(VideoError, match="runtime extra"):
        read_video(videos["mov"], uniform_sampler())


# --- frames the user already has ------------------------------------------------------------------
def test_video_from_frames_and_folder(tmp_path):
    src = source_frames(12)
    v = video_from_frames(src, fps=12)
    assert np.array_equal(v.frames, np.stack(src)) and np.array_equal(v.indices, np.arange(12))
    assert v.metadata == VideoMetadata(total_frames=12, fps=12.0, width=WIDTH, height=HEIGHT)
    assert np.array_equal(video_from_frames(np.stack(src)).frames, v.frames)
    rgba = Image.fromarray(src[0]).convert("RGBA")
    assert np.array_equal(video_from_frames([rgba, src[1]]).frames[0], src[0])
    for i, f in enumerate(src):
        Image.fromarray(f).save(tmp_path / f"frame_{i:03d}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    folder = video_from_folder(tmp_path)
    assert np.array_equal(folder.frames, v.frames) and folder.metadata.fps is None and folder.sampled_fps == 24.0
    with pytest.raises(VideoError, match="frame rate is unknown"):
        uniform_indices(folder.metadata.total_frames, fps=1, video_fps=folder.metadata.fps)


@pytest.mark.parametrize("frames, message", [
    ([], "no frames"),
    ([np.zeros((64, 96, 3), np.uint8), np.zeros((64, 90, 3), np.uint8)], "same size"),
    ([np.zeros((64, 96, 3), np.float32)], "uint8"),
    ([np.zeros((64, 96), np.uint8)], "uint8"),
    ([np.zeros((4, 4, 3), np.uint8)], "too small"),
    (["frame.png"], "expected a uint8"),
    (np.zeros((64, 96, 3), np.uint8), "expected \\[N, H, W, 3\\]"),
])
def test_bad_frames_are_refused(frames, message):
    with pytest.raises(VideoError, match=message):
        video_from_frames(frames)


def test_bad_frame_rate_is_refused():
    with pytest.raises(VideoError, match="positive frame rate"):
        video_from_frames(source_frames(2), fps=0)


def test_bad_folders_are_refused(tmp_path):
    with pytest.raises(VideoError, match="no frame images"):
        video_from_folder(tmp_path)
    with pytest.raises(VideoError, match="no such folder"):
        video_from_folder(tmp_path / "nope")
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(VideoError, match="is a file"):
        video_from_folder(tmp_path / "a.png")
    with pytest.raises(VideoError, match="a.png"):  # an unreadable image, named
        video_from_folder(tmp_path)
    Image.fromarray(source_frames(1)[0]).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(VideoError, match="same size"):
        video_from_folder(tmp_path)


def test_module_imports_without_torch():
    code = ("import sys; import mmedge.runtime.video; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'torchvision'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-2000:]
