"""Video input: a file, a list of frames or a folder of images -> sampled uint8 RGB frames.

Which frames a model sees changes its answer, so sampling reproduces transformers 5.24 index for
index, in numpy: `uniform_indices` is `transformers.video_utils.default_sample_indices_fn`,
`qwen2vl_indices` is `Qwen2VLVideoProcessor.sample_frames` (whose float32 `torch.arange` is
reproduced element for element). Files are decoded with PyAV as transformers'
`read_video_pyav` decodes them (the same frames, bit for bit), with the refusals a user can act
on instead of PyAV tracebacks, and bounds on what a file may make us decode and hold.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mmedge.errors import ImageError, VideoError

from .images import check_image_size, load_image, to_rgb

# More frames than any edge model takes in one prompt; also bounds what a sampler may ask to decode.
MAX_SAMPLED_FRAMES = 1024
# All sampled frames together (2**30 pixels = 3 GiB of RGB): 1024 frames of 1024x1024, or 128 of 4K.
MAX_SAMPLED_PIXELS = 2**30
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# torch's x86 CPU arange writes float32 in vectors of this many lanes under every ATen capability
# (default, avx2, avx512: the kernel has no AVX-512 variant; tested under each). It only changes
# indices of videos above ~16k frames (see `_torch_arange_int`).
TORCH_FLOAT_LANES = 8
# A file whose frames cover less than this share of the duration its header states is truncated.
_MIN_DURATION_SHARE = 0.9


@dataclass(frozen=True)
class VideoMetadata:
    """What the container says (or decoding found) about the whole video, before sampling."""

    total_frames: int
    fps: float | None  # None: the container does not say (fps-based sampling is then refused)
    width: int
    height: int


@dataclass
class Video:
    frames: np.ndarray  # uint8 [N, H, W, 3] RGB, the sampled frames
    indices: np.ndarray  # int64 [N] frame numbers sampled, increasing
    metadata: VideoMetadata

    @property
    def sampled_fps(self) -> float:
        """Frames per second of the sampled frames, as transformers' `VideoMetadata.sampled_fps`
        (Qwen2.5-VL's temporal positions use it): 24 when the video's rate is unknown."""
        if self.metadata.fps is None:
            return 24.0
        return len(self.indices) / self.metadata.total_frames * self.metadata.fps


# --- sampling -----------------------------------------------------------------------------------
def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _check_request(total_frames: int, num_frames: int | None, fps: float | None, video_fps: float | None) -> None:
    """Refuse what no sampler can do, in the words a user can act on."""
    if not _is_int(total_frames) or total_frames < 1:
        raise VideoError(f"the video has {total_frames!r} frames; a video needs at least one frame")
    if num_frames is not None and fps is not None:
        raise VideoError(f"asked for both num_frames={num_frames} and fps={fps}; give one of them "
                         "(transformers' video processors refuse both)")
    if num_frames is not None and (not _is_int(num_frames) or num_frames < 1):
        raise VideoError(f"num_frames={num_frames!r}: expected a whole number of frames, at least 1")
    if fps is not None:
        if not isinstance(fps, (int, float, np.number)) or not math.isfinite(fps) or fps <= 0:
            raise VideoError(f"fps={fps!r}: expected a positive number of frames per second of video")
        if video_fps is None or not math.isfinite(video_fps) or video_fps <= 0:
            raise VideoError(f"asked for fps={fps} but the video's own frame rate is unknown ({video_fps!r}); "
                             "give num_frames instead")


def _too_many(wanted: int, total_frames: int, how: str) -> VideoError:
    return VideoError(f"{how} asks for {wanted} frames but the video has only {total_frames}; "
                      "ask for fewer frames (a smaller num_frames or fps)")


def uniform_indices(total_frames: int, num_frames: int | None = None, fps: float | None = None,
                    video_fps: float | None = None) -> np.ndarray:
    """Evenly spaced frame numbers, as transformers' `default_sample_indices_fn` (the sampler of
    LLaVA-OneVision and every processor without its own): `num_frames` of them, or
    `total / video_fps * fps` (at least 1) when a rate is asked; all frames when neither is."""
    _check_request(total_frames, num_frames, fps, video_fps)
    if num_frames is None and fps is None:
        return np.arange(total_frames, dtype=np.int64)
    how = f"num_frames={num_frames}"
    if num_frames is None:
        num_frames = max(1, int(total_frames / video_fps * fps))
        how = f"fps={fps} of a {total_frames}-frame video at {video_fps} fps"
    if num_frames > total_frames:
        raise _too_many(num_frames, total_frames, how)
    return np.arange(num_frames, dtype=np.int64) * total_frames // num_frames


def qwen2vl_indices(total_frames: int, video_fps: float | None, num_frames: int | None = None,
                    fps: float | None = None, temporal_patch_size: int = 2, min_frames: int = 4,
                    max_frames: int = 768) -> np.ndarray:
    """Frame numbers as `Qwen2VLVideoProcessor.sample_frames` picks them (Qwen2-VL, Qwen2.5-VL).

    The count is a multiple of `temporal_patch_size` (frames are encoded in pairs): `num_frames`
    rounded half-to-even (Python's `round`), or from `fps` clamped to [min_frames, max_frames]
    and floored. Indices are `torch.arange(0, total, total / count).int()`, float32 arithmetic
    reproduced exactly; that arange is one element longer than `count` for about a quarter of
    (total, count) pairs, its extra element being `total` itself, a frame that does not exist:
    transformers' PyAV loader skips it (its array path raises IndexError), so it is dropped here.
    """
    _check_request(total_frames, num_frames, fps, video_fps)
    if not _is_int(temporal_patch_size) or temporal_patch_size < 1:
        raise VideoError(f"temporal_patch_size={temporal_patch_size!r}: expected a whole number, at least 1")
    tps = temporal_patch_size
    if num_frames is not None:
        wanted = round(num_frames / tps) * tps
        how = f"num_frames={num_frames} (rounded to a multiple of {tps}: {wanted})"
    elif fps is not None:
        cap = math.floor(min(max_frames, total_frames) / tps) * tps
        wanted = min(max(total_frames / video_fps * fps, min_frames), cap, total_frames)
        wanted = math.floor(wanted / tps) * tps
        how = f"fps={fps} of a {total_frames}-frame video at {video_fps} fps (clamped to {min_frames}..{cap})"
    else:
        return np.arange(total_frames, dtype=np.int64)
    if wanted > total_frames:
        raise _too_many(wanted, total_frames, how)
    if wanted < 1:
        raise VideoError(f"{how} gives 0 frames; the video needs at least {tps} frames "
                         f"(Qwen2-VL encodes frames in groups of {tps}), ask for {tps} or more")
    indices = _torch_arange_int(total_frames, total_frames / wanted)
    return indices[indices < total_frames].astype(np.int64)


def _torch_arange_int(end: int, step: float) -> np.ndarray:
    """`torch.arange(0, end, step).int()` as torch computes it on x86, element for element, in numpy
    (so the same on every CPU the runtime runs on).

    torch sizes the result as ceil(end / step) in double. The float32 elements are computed in
    double and rounded to float32, but not all alike: its CPU kernel fills blocks of 2*lanes
    elements with vector code, whose block of `lanes` starts from a base already rounded to
    float32 (float(float(step * i0) + k * step)), and the tail one by one (float(step * i)).
    The two differ only where float32 is coarser than 1/count (frame numbers above ~16k).
    `.int()` truncates toward zero. torch's ARM (NEON) kernel is another one; see the README's
    limitations.
    """
    lanes = TORCH_FLOAT_LANES
    n = math.ceil(end / step)
    i = np.arange(n, dtype=np.int64)
    k = i % lanes
    base = ((i - k) * step).astype(np.float32).astype(np.float64)
    vector = i < n // (2 * lanes) * (2 * lanes)
    values = np.where(vector, base + k * step, i * step)
    return values.astype(np.float32).astype(np.int32)


def uniform_sampler(num_frames: int | None = None, fps: float | None = None) -> Callable[[VideoMetadata], np.ndarray]:
    """`uniform_indices` with the request fixed, for `read_video(path, uniform_sampler(num_frames=8))`."""
    return lambda m: uniform_indices(m.total_frames, num_frames=num_frames, fps=fps, video_fps=m.fps)


def qwen2vl_sampler(num_frames: int | None = None, fps: float | None = None, temporal_patch_size: int = 2,
                    min_frames: int = 4, max_frames: int = 768) -> Callable[[VideoMetadata], np.ndarray]:
    """`qwen2vl_indices` with the request fixed, for `read_video(path, qwen2vl_sampler(fps=2))`."""
    return lambda m: qwen2vl_indices(m.total_frames, m.fps, num_frames=num_frames, fps=fps,
                                     temporal_patch_size=temporal_patch_size, min_frames=min_frames,
                                     max_frames=max_frames)


# --- video files ---------------------------------------------------------------------------------
def _import_av():
    try:
        import av
    except ImportError:
        raise VideoError("reading video files needs PyAV, which is not installed; "
                         "install the runtime extra (`pip install 'mmedge[runtime]'`) or `pip install av`") from None
    return av


@contextmanager
def _ffmpeg_errors(av, name: str) -> Iterator[None]:
    """PyAV's exceptions -> a VideoError naming the file and what to do."""
    try:
        yield
    except av.error.FFmpegError as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise VideoError(f"{name}: FFmpeg cannot read this as a video ({reason}); it is not a video file, or it is "
                         "damaged or truncated (an MP4 cut short loses its index): re-export or re-download it") from None


@contextmanager
def _as_video_error() -> Iterator[None]:
    """The image checks' refusals, worded for frames, as VideoError."""
    try:
        yield
    except ImageError as e:
        raise VideoError(str(e)) from None


def _check_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        raise VideoError(f"{path}: is a folder; give a video file, or use video_from_folder for a folder of frame images")
    if not path.is_file():
        raise VideoError(f"{path}: no such file; give the path of a video file (MP4, MKV, MOV, WebM, AVI)")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: the file is empty (0 bytes); the download or export did not finish, redo it")
    return path


def _declared_seconds(container, stream) -> float | None:
    """How long the file says the video lasts: the stream's duration, else Matroska's DURATION
    tag, else the container's duration when the video is its only stream."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = (stream.metadata or {}).get("DURATION")  # "HH:MM:SS.nnnnnnnnn", written by FFmpeg's muxer
    if tag:
        try:
            h, m, s = tag.split(":")
            return int(h) * 3600 + int(m) * 60 + float(s)
        except ValueError:
            pass
    if container.duration and len(container.streams) == 1:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _count_frames(container, stream, name: str, fps: float | None) -> int:
    """Decode once to count frames, for containers that do not store the count (Matroska, WebM);
    a count far below the stated duration means the file was cut short."""
    container.seek(0)
    total = sum(1 for _ in container.decode(video=0))
    declared = _declared_seconds(container, stream)
    if total and fps and declared and total < _MIN_DURATION_SHARE * declared * fps - 1:
        raise VideoError(f"{name}: the file says the video lasts {declared:.2f} s ({declared * fps:.0f} frames at "
                         f"{fps:g} fps) but only {total} frames decode; the file is truncated, re-export or re-download it")
    return total


def _probe(av, name: str) -> VideoMetadata:
    """The first video stream's metadata, as transformers' `read_video_pyav` reads it."""
    with _ffmpeg_errors(av, name), av.open(name) as container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["no"]
            raise VideoError(f"{name}: the file has no video stream (it holds {', '.join(kinds)} streams); give a video file")
        stream = container.streams.video[0]
        width, height = stream.width, stream.height
        if width <= 0 or height <= 0:
            raise VideoError(f"{name}: the video stream does not state its frame size; the file is damaged")
        with _as_video_error():
            check_image_size(width, height, f"{name}: each frame")
        rate = stream.average_rate
        fps = float(rate) if rate else None
        fps = fps if fps is not None and math.isfinite(fps) and fps > 0 else None
        total = stream.frames or _count_frames(container, stream, name, fps)
    if total < 1:
        raise VideoError(f"{name}: the video stream has no frames; the file is damaged or truncated")
    return VideoMetadata(total_frames=int(total), fps=fps, width=width, height=height)


def _checked_indices(raw, metadata: VideoMetadata, name: str) -> np.ndarray:
    """A sampler's answer -> int64 frame numbers, refused unless they are frames of this video,
    increasing, and within the decoding bounds."""
    indices = np.asarray(raw)
    if indices.ndim != 1 or indices.size == 0 or indices.dtype.kind not in "iu":
        raise VideoError(f"{name}: the sampler gave {indices.dtype} indices of shape {indices.shape}; "
                         "expected a non-empty 1-D array of integer frame numbers")
    if len(indices) > MAX_SAMPLED_FRAMES:
        raise VideoError(f"{name}: {len(indices)} frames asked for, above the limit of {MAX_SAMPLED_FRAMES}; "
                         "sample fewer (a smaller num_frames or fps)")
    if indices[0] < 0 or indices[-1] >= metadata.total_frames or (np.diff(indices) <= 0).any():
        raise VideoError(f"{name}: the sampler's frame numbers must increase within 0..{metadata.total_frames - 1} "
                         f"(the video's frames); got {indices.tolist()[:8]}{'...' if len(indices) > 8 else ''}")
    pixels = len(indices) * metadata.width * metadata.height
    if pixels > MAX_SAMPLED_PIXELS:
        raise VideoError(f"{name}: {len(indices)} frames of {metadata.width}x{metadata.height} are {pixels} pixels, "
                         f"above the limit of {MAX_SAMPLED_PIXELS}; sample fewer frames or downscale the video")
    return indices.astype(np.int64)


def _decode(av, name: str, indices: np.ndarray, metadata: VideoMetadata) -> np.ndarray:
    """Decode in order from the start, keeping the sampled frames (stop after the last), as RGB:
    transformers' `read_video_pyav` loop, so the frames are the same bit for bit."""
    frames = np.empty((len(indices), metadata.height, metadata.width, 3), dtype=np.uint8)
    wanted, last, kept, seen = set(indices.tolist()), int(indices[-1]), 0, 0
    with _ffmpeg_errors(av, name), av.open(name) as container:
        container.seek(0)
        for i, frame in enumerate(container.decode(video=0)):
            seen = i + 1
            if i > last:
                break
            if i in wanted:
                rgb = frame.to_ndarray(format="rgb24")
                if rgb.shape != frames.shape[1:]:
                    raise VideoError(f"{name}: frame {i} is {rgb.shape[1]}x{rgb.shape[0]}, the video stream says "
                                     f"{metadata.width}x{metadata.height}; videos whose frame size changes are not read")
                frames[kept] = rgb
                kept += 1
    if kept < len(indices):
        raise VideoError(f"{name}: only {seen} frames decode but the file says {metadata.total_frames} and frame {last} "
                         "was asked for; the file is truncated or damaged, re-export or re-download it")
    return frames


def read_video(path: str | os.PathLike, sample: Callable[[VideoMetadata], np.ndarray]) -> Video:
    """Decode the frames `sample(metadata)` picks from a video file (first video stream).

    `sample` is e.g. `uniform_sampler(num_frames=8)` or a video layout's `sample`. The frames equal
    `transformers.video_utils.load_video(path, backend="pyav", ...)`'s with the same indices.
    Refused with `VideoError`: a missing, empty, non-video, damaged or truncated file, no frames,
    frames above the image pixel limit, and samples beyond MAX_SAMPLED_FRAMES / MAX_SAMPLED_PIXELS.
    """
    name = str(_check_path(path))
    av = _import_av()
    metadata = _probe(av, name)
    try:
        raw = sample(metadata)
    except VideoError as e:  # the request does not fit this video: say which video
        raise VideoError(f"{name}: {e}") from None
    indices = _checked_indices(raw, metadata, name)
    return Video(frames=_decode(av, name, indices, metadata), indices=indices, metadata=metadata)


# --- frames the user already has --------------------------------------------------------------------
def _frame_array(frame, what: str) -> np.ndarray:
    """One frame -> uint8 [H, W, 3]: PIL images converted as images are (alpha onto white)."""
    with _as_video_error():
        if isinstance(frame, Image.Image):
            return np.asarray(to_rgb(frame, what))
        if not isinstance(frame, np.ndarray):
            raise VideoError(f"{what}: a {type(frame).__name__}; expected a uint8 [H, W, 3] RGB array or a PIL image")
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise VideoError(f"{what}: a {frame.dtype} array of shape {frame.shape}; expected uint8 [H, W, 3] RGB "
                             "(values 0..255; convert floats with (x * 255).round().astype(np.uint8))")
        check_image_size(frame.shape[1], frame.shape[0], what)
    return frame


def _stack(arrays: list[np.ndarray], names: list[str], fps: float | None) -> Video:
    """Validated frames -> a Video of all of them (frame numbers 0..N-1)."""
    height, width = arrays[0].shape[:2]
    for array, name in zip(arrays, names):
        if array.shape[:2] != (height, width):
            raise VideoError(f"{name} is {array.shape[1]}x{array.shape[0]} but {names[0]} is {width}x{height}; "
                             "all frames of a video must have the same size, resize them first")
    if len(arrays) * width * height > MAX_SAMPLED_PIXELS:
        raise VideoError(f"{len(arrays)} frames of {width}x{height} exceed the limit of {MAX_SAMPLED_PIXELS} pixels; "
                         "give fewer or smaller frames")
    if fps is not None and (not isinstance(fps, (int, float, np.number)) or not math.isfinite(fps) or fps <= 0):
        raise VideoError(f"fps={fps!r}: expected a positive frame rate, or None when it is unknown")
    metadata = VideoMetadata(total_frames=len(arrays), fps=None if fps is None else float(fps), width=width, height=height)
    return Video(frames=np.stack(arrays), indices=np.arange(len(arrays), dtype=np.int64), metadata=metadata)


def _check_count(n: int, what: str) -> None:
    if n == 0:
        raise VideoError(f"{what}: no frames; a video needs at least one frame")
    if n > MAX_SAMPLED_FRAMES:
        raise VideoError(f"{what}: {n} frames, above the limit of {MAX_SAMPLED_FRAMES}; give fewer frames")


def video_from_frames(frames: Sequence[np.ndarray | Image.Image] | np.ndarray, fps: float | None = None) -> Video:
    """A video from frames already decoded: a list of uint8 [H, W, 3] RGB arrays or PIL images, or
    one uint8 [N, H, W, 3] array. All frames are kept; sample them with the layout afterwards.
    `fps` is the frames' rate (None: unknown, which rules out sampling by rate)."""
    if isinstance(frames, np.ndarray) and frames.ndim != 4:
        raise VideoError(f"frames: an array of shape {frames.shape}; expected [N, H, W, 3] (or a list of frames)")
    if isinstance(frames, (Image.Image, str, bytes, os.PathLike)):
        raise VideoError(f"frames: a single {type(frames).__name__}; give a list of frames "
                         "(read_video reads a file, video_from_folder a folder of images)")
    frames = list(frames)
    _check_count(len(frames), "frames")
    names = [f"frame {i}" for i in range(len(frames))]
    return _stack([_frame_array(f, n) for f, n in zip(frames, names)], names, fps)


def video_from_folder(path: str | os.PathLike) -> Video:
    """A video from a folder of frame images (PNG, JPEG, WebP, BMP), in file-name order (zero-pad
    the numbers: frame_10 sorts before frame_2); other files are ignored. The rate is unknown."""
    folder = Path(path)
    if not folder.is_dir():
        what = "is a file; give a folder of frame images, or use read_video for a video file" if folder.exists() \
            else "no such folder; give a folder of frame images"
        raise VideoError(f"{folder}: {what}")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and p.is_file()), key=lambda p: p.name)
    if not files:
        raise VideoError(f"{folder}: no frame images ({', '.join(FRAME_SUFFIXES)}) in the folder; "
                         "put the frames there as numbered image files")
    _check_count(len(files), str(folder))
    with _as_video_error():
        images = [load_image(p) for p in files]
    names = [str(p) for p in files]
    return _stack([_frame_array(img, n) for img, n in zip(images, names)], names, None)
