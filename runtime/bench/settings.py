"""What one bench run measures: typed, validated, and written as the worker's command line.

The worker takes everything on its command line (no files, no environment), so the same command
can run on another machine over ssh with only the runtime installed.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass

from mmedge.errors import BenchError

DEFAULT_PROMPT = "Describe this picture in detail."
MAX_REPS = 1000
MAX_WARMUP = 100
MAX_THREADS = 1024
MAX_TOKENS = 1 << 16


@dataclass(frozen=True)
class BenchSettings:
    images: tuple[str, ...] = ()  # image files; none (and no video): the built-in photo-like image
    video: str | None = None  # a video file or a folder of frames (bundles that take videos)
    frames: int | None = None  # frames sampled from the video (None with video_fps None: the bundle's default)
    video_fps: float | None = None  # or frames per second of video
    prompt: str = DEFAULT_PROMPT
    threads: int = 0  # 0: every core this process may use (llama.cpp and onnxruntime alike)
    reps: int = 5  # timed runs per bundle; also the number of warm loads
    warmup: int = 1  # untimed runs before them
    max_tokens: int = 32  # new tokens per run, EOS banned: max_tokens - 1 decode steps are timed
    # The runtime's image-embedding cache on: the warm-up fills it, so timed runs measure a repeated
    # image (encoder and projector skipped). Off by default: runs must measure the encoder.
    embedding_cache: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", tuple(str(i) for i in self.images))
        if not 1 <= self.reps <= MAX_REPS:
            raise BenchError(f"--reps must be in 1 .. {MAX_REPS} (timed runs per bundle), got {self.reps}")
        if not 0 <= self.warmup <= MAX_WARMUP:
            raise BenchError(f"--warmup must be in 0 .. {MAX_WARMUP} (untimed runs first), got {self.warmup}")
        if not 0 <= self.threads <= MAX_THREADS:
            raise BenchError(f"--threads must be in 0 .. {MAX_THREADS} (0 = every core this process may use), got {self.threads}")
        if self.frames is not None or self.video_fps is not None:
            self._check_frame_request()
        if not 2 <= self.max_tokens <= MAX_TOKENS:
            raise BenchError(f"--max-tokens must be in 2 .. {MAX_TOKENS}: decoding is timed over max-tokens - 1 steps, "
                             f"got {self.max_tokens}")

    def _check_frame_request(self) -> None:
        """--frames / --video-fps by the runtime's own rules (imported only when given: this module
        stays cheap to import for the CLI)."""
        if self.video is None:
            raise BenchError("--frames / --video-fps sample a video: give --video too")
        from mmedge.errors import VideoError
        from mmedge.runtime.layouts import FrameRequest

        try:
            FrameRequest(num_frames=self.frames, fps=self.video_fps)
        except VideoError as e:
            raise BenchError(f"--frames / --video-fps: {e}") from None

    @property
    def default_image(self) -> bool:
        """No input given: the worker makes the built-in image."""
        return not self.images and self.video is None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["images"] = list(self.images)
        d["default_image"] = self.default_image
        return d

    def worker_argv(self) -> list[str]:
        """The worker's options for these settings (the bundle path comes first, separately)."""
        argv = [a for image in self.images for a in ("--image", image)]
        if self.video is not None:
            argv += ["--video", self.video]
        if self.frames is not None:
            argv += ["--frames", str(self.frames)]
        if self.video_fps is not None:
            argv += ["--video-fps", repr(self.video_fps)]
        if self.embedding_cache:
            argv.append("--embedding-cache")
        return argv + ["--prompt", self.prompt, "--threads", str(self.threads), "--reps", str(self.reps),
                       "--warmup", str(self.warmup), "--max-tokens", str(self.max_tokens)]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options `mmedge bench` and the worker share, with the same names and defaults."""
    d = BenchSettings()
    p.add_argument("--image", action="append", default=[], help="an image file; repeat for several "
                   "(default: a built-in photo-like 640x480 image)")
    p.add_argument("--video", help="a video file or a folder of frames, for bundles that take videos")
    p.add_argument("--frames", type=int, help="frames to sample from the video (default: the bundle's, as HF)")
    p.add_argument("--video-fps", type=float, help="frames per second of video to sample, instead of --frames")
    p.add_argument("--prompt", default=d.prompt, help=f"the user's message (default: {d.prompt!r})")
    p.add_argument("--threads", type=int, default=d.threads, help="threads for llama.cpp and onnxruntime (0 = every core this process may use)")
    p.add_argument("--reps", type=int, default=d.reps, help=f"timed runs per bundle (default {d.reps})")
    p.add_argument("--warmup", type=int, default=d.warmup, help=f"untimed runs before them (default {d.warmup})")
    p.add_argument("--max-tokens", type=int, default=d.max_tokens,
                   help=f"new tokens per run, end of text banned (default {d.max_tokens})")
    p.add_argument("--embedding-cache", action="store_true",
                   help="turn the runtime's image-embedding cache on: the warm-up fills it and the timed runs "
                        "measure a repeated image (needs --warmup >= 1 to hit from the first timed run)")


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    return BenchSettings(images=tuple(args.image or ()), video=args.video, frames=args.frames, video_fps=args.video_fps,
                         prompt=args.prompt, threads=args.threads,
                         reps=args.reps, warmup=args.warmup, max_tokens=args.max_tokens,
                         embedding_cache=args.embedding_cache)
