"""Time every stage of several bundles side by side, in one run, and print ratios.

    python benchmarks/stage_times.py BUNDLE [BUNDLE ...] [--reps 5] [--threads N] [--json OUT]

Each bundle runs the same image and prompt; after a warm-up, stages are timed `--reps` times and
the median is reported. Ratios are against the first bundle, measured in the same run (the machine
is shared and noisy, so only side-by-side ratios mean anything). Torch-free.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mmedge.runtime.pipeline import GenerationParams, Pipeline, RuntimeOptions

STAGES = ("preprocess_s", "encode_s", "project_s", "prefill_s", "first_token_s", "decode_s")


def photo_like(seed: int = 0, size=(640, 480)) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    img = np.stack([127 + 100 * np.sin(x / (20 + 10 * c) + rng.uniform(0, 6)) * np.cos(y / 30) for c in range(3)], -1)
    return Image.fromarray(np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8))


def bench_bundle(path: str, reps: int, threads: int, tokens: int) -> dict:
    t0 = time.perf_counter()
    pipe = Pipeline(path, RuntimeOptions(threads=threads, n_ctx=2048))
    load_s = time.perf_counter() - t0
    image = photo_like()
    params = GenerationParams(max_new_tokens=tokens, min_new_tokens=tokens)
    pipe.generate([image], "Describe the picture.", params)  # warm-up
    runs = [pipe.generate([image], "Describe the picture.", params).stats for _ in range(reps)]
    pipe.close()
    m = pipe.manifest
    out = {"bundle": path, "load_s": load_s, "precisions": {r: p.precision for r, p in m.parts.items()},
           "prompt_positions": runs[0].prompt_positions, "new_tokens": runs[0].new_tokens}
    for stage in STAGES:
        values = [getattr(s, stage) for s in runs]
        out[stage] = {"median": statistics.median(values), "p90": sorted(values)[int(0.9 * (len(values) - 1))],
                      "mean": statistics.fmean(values), "sd": statistics.pstdev(values)}
    out["decode_tokens_per_s"] = statistics.median(s.decode_tokens_per_s for s in runs)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", nargs="+")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    results = [bench_bundle(b, args.reps, args.threads, args.tokens) for b in args.bundles]
    base = results[0]
    header = f"{'bundle':<28}" + "".join(f"{s.removesuffix('_s'):>19}" for s in STAGES) + f"{'tok/s':>10}"
    print(header)
    for r in results:
        row = f"{Path(r['bundle']).name[:27]:<28}"
        for s in STAGES:
            ms = r[s]["median"] * 1e3
            ratio = r[s]["median"] / base[s]["median"] if base[s]["median"] > 0 else float("nan")
            row += f"{ms:9.2f}ms ({ratio:4.2f}x)".rjust(19)
        row += f"{r['decode_tokens_per_s']:10.1f}"
        print(row)
    print("medians of", args.reps, "runs after a warm-up; '(Nx)' = ratio to the first bundle, same run")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
