"""One bundle measured inside a worker process: loads, then warm-up and timed runs of
`Pipeline.generate` itself, so the numbers are those of the user's path (the pipeline times each
stage on its own; see `GenerationStats`)."""
from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Callable

from mmedge.errors import BenchError

from ..backends import part_target
from ..images import load_image
from ..layouts import FrameRequest, PreparedImage
from ..pipeline import GenerationParams, GenerationStats, Pipeline, RuntimeOptions
from .photo import photo_like
from .settings import BenchSettings
from .stats import summarize

BUILT_IN = "built-in"  # the `source` of the default image
# The cache size with --embedding-cache: room for every input of a bench run.
BENCH_CACHE_MIB = 4096

# The stages that make up the time to first token, in pipeline order (GenerationStats fields).
TTFT_STAGES = ("preprocess_s", "plan_s", "encode_s", "project_s", "assemble_s", "prefill_s", "first_sample_s")

Step = Callable[[str], None]


def measure_bundle(path: str | Path, s: BenchSettings, step: Step = lambda label: None) -> dict:
    """Everything `mmedge bench` reports about one bundle (the `bundles[]` entry of the schema,
    without what the parent adds). `step` is called after each load and run (progress)."""
    options = RuntimeOptions(threads=s.threads, embedding_cache_mib=BENCH_CACHE_MIB if s.embedding_cache else 0)
    t0 = time.perf_counter()
    pipe = Pipeline(path, options)  # the first in this process: cold (imports done, hashes checked)
    cold_s = time.perf_counter() - t0
    step("cold load")
    try:
        media, images = describe_inputs(pipe, s)
        params = GenerationParams(max_new_tokens=s.max_tokens, min_new_tokens=s.max_tokens)
        for _ in range(s.warmup):
            _run(pipe, images, s, params)
            step("warm-up run")
        runs = []
        for _ in range(s.reps):
            runs.append(_run(pipe, images, s, params))
            step("timed run")
        # Before the warm loads below: the peak of a process that loads once and answers.
        peak_rss_mib = _peak_rss_mib()
        info = _bundle_info(pipe)
    finally:
        pipe.close()
    warm = []
    for _ in range(s.reps):
        t0 = time.perf_counter()
        Pipeline(path, options).close()
        warm.append(time.perf_counter() - t0)
        step("warm load")

    calls = sum(m["encoder_calls"] for m in media)
    tiles = None if any(m["tiles"] is None for m in media) else sum(m["tiles"] for m in media)
    first = runs[0]
    llm_threads = info.pop("llm_threads")
    return {
        **info,
        "threads": {"asked": s.threads, "effective": llm_threads},
        "inputs": {"media": media, "encoder_calls": calls, "tiles": tiles, "prompt_positions": first.prompt_positions,
                   "embedding_cache_hits": [r.embedding_cache_hits for r in runs]},
        "load": {"cold_s": summarize([cold_s]), "warm_s": summarize(warm)},
        # encode_per_tile_s is None when the inputs are not tiles (see _medium).
        "stages": {name: values and summarize(values) for name, values in _stage_values(runs, calls, tiles).items()},
        "rates": {"prefill_tokens_per_s": summarize([r.prefill_tokens_per_s for r in runs]),
                  "decode_tokens_per_s": summarize([r.decode_tokens_per_s for r in runs])},
        "decode": {"new_tokens": first.new_tokens, "steps": first.new_tokens - 1,
                   "kv_cells_start": first.kv_cells_decode_start, "kv_cells_end": first.kv_cells_end},
        "memory": {"peak_rss_mib": peak_rss_mib},
    }


def describe_inputs(pipe: Pipeline, s: BenchSettings) -> tuple[list[dict], list]:
    """What each input is and how the bundle's layouts cut it (prepared once, untimed, by the
    pipeline's own stage methods); and the images to hand `generate` on every run: the files
    (decoded in every run, as a user's are) or the built-in image."""
    if s.default_image:
        image = photo_like()
        loaded, images, sources = [image], [image], [BUILT_IN]
    else:
        loaded, images, sources = [load_image(p) for p in s.images], list(s.images), list(s.images)
    media = [_medium("image", src, p, img.width, img.height)
             for src, img, p in zip(sources, loaded, pipe.prepare_images(loaded))]
    if s.video is not None:
        if pipe.video_layout is None:
            pipe.prepare_videos([s.video])  # raises the pipeline's own PromptError: this bundle takes no videos
        video = pipe.video_layout.load(s.video, frame_request(s))
        (prepared,) = pipe.prepare_videos([video])
        n, h, w = video.frames.shape[:3]
        media.append(_medium("video", s.video, prepared, w, h, frames=n))
    return media, images


def frame_request(s: BenchSettings) -> FrameRequest:
    return FrameRequest(num_frames=s.frames, fps=s.video_fps)


def _medium(kind: str, source: str, p: PreparedImage, width: int, height: int, frames: int | None = None) -> dict:
    shapes = [list(call[p.input_name].shape) for call in p.encoder_calls()]
    # Tiles: image-shaped encoder inputs ([T, C, H, W]) that one call takes as a batch. Qwen-style
    # patch rows ([N, C*T*P*P]) and audio features are not tiles: per-tile time is then undefined.
    tiles = sum(shape[0] for shape in shapes) if all(len(shape) == 4 for shape in shapes) else None
    return {"medium": kind, "source": source, "width": width, "height": height, "frames": frames,
            "encoder_calls": len(shapes), "encoder_input_shapes": shapes, "tiles": tiles, "rows": p.n_rows}


def _run(pipe: Pipeline, images: list, s: BenchSettings, params: GenerationParams) -> GenerationStats:
    stats = pipe.generate(images, s.prompt, params, videos=[s.video] if s.video is not None else None,
                          frames=frame_request(s)).stats
    if stats.new_tokens != s.max_tokens:  # cannot happen with EOS banned; a rate over other counts would mislead
        raise BenchError(f"a run produced {stats.new_tokens} tokens instead of {s.max_tokens}; the bench cannot time it")
    return stats


def _stage_values(runs: list[GenerationStats], calls: int, tiles: int | None) -> dict[str, list[float] | None]:
    values: dict[str, list[float] | None] = {name: [getattr(r, name) for r in runs] for name in TTFT_STAGES}
    # Every input makes at least one encoder call, so calls >= 1.
    values["encode_per_call_s"] = [r.encode_s / calls for r in runs]
    values["encode_per_tile_s"] = [r.encode_s / tiles for r in runs] if tiles else None
    values["ttft_sum_s"] = [sum(getattr(r, name) for name in TTFT_STAGES) for r in runs]
    values["ttft_s"] = [r.first_token_s for r in runs]
    values["decode_s"] = [r.decode_s for r in runs]
    values["llama_prefill_s"] = [r.llama_prefill_s for r in runs]
    values["llama_decode_s"] = [r.llama_decode_s for r in runs]
    # mmedge's own time: the run (TTFT + decode) minus the time inside onnxruntime/ExecuTorch and llama_decode.
    values["orchestration_s"] = [r.first_token_s + r.decode_s - r.encode_s - r.project_s - r.llama_prefill_s
                                 - r.llama_decode_s for r in runs]
    return values


def _bundle_info(pipe: Pipeline) -> dict:
    m = pipe.manifest
    parts = []
    for role, part in [*pipe.parts.items(), ("llm", m.parts["llm"])]:
        placement = pipe.placements[role]
        parts.append({"role": role, "kind": part.kind, "precision": part.precision, "target": part_target(part),
                      "file": part.file, "size_bytes": part.size_bytes, "provider": placement.provider,
                      "device": placement.device, "threads": pipe.part_threads[role]})
    return {"family": m.family, "architecture": m.architecture, "modality": m.modality, "parts": parts,
            "n_ctx": pipe.llm.n_ctx, "llm_threads": pipe.llm.n_threads, "placement_notes": list(pipe.placement_notes)}


def _peak_rss_mib() -> float:
    """The process's peak resident set so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
