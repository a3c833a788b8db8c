"""What each way of running a bundle's encoder + projector gives, side by side in one run.

    python -m benchmarks.encoder_options BUNDLE [--compare NAME=BUNDLE ...] [--tiles 2] [--threads 1]
        [--reps 3] [--out benchmarks/results/<UTC date>-<machine id>-encoder-options/]

The variants, interleaved round by round (A B C ... A B C ...), each timed over `--tiles` image
tiles of the bundle's input size (random pixels: timing does not depend on values), are:

- `runtime`: what mmedge runs: the encoder then the projector, one onnxruntime session each, all
  tiles of the image in one call (intra-op threads = --threads, inter-op 1, ORT_ENABLE_ALL, spinning on);
- `per-tile`: the same sessions, one call per tile;
- `merged`: encoder and projector merged into one graph (`onnx.compose`), one session;
- `no-spin`: `session.intra_op.allow_spinning = 0` (threads sleep between ops instead of spinning);
- `basic-opt`: ORT_ENABLE_BASIC instead of ORT_ENABLE_ALL (what the layout-level fusions give);
- `--compare NAME=BUNDLE`: another bundle's parts, run as `runtime` (an unfused export, another precision);
- `cache-lookup`: the embedding cache's key (sha256 of one tile) — the cost of a lookup.

Writes `encoder_options.json` and `encoder_options.md` (medians per tile, ratios to `runtime`).
The bundle's tensor parts must be ONNX.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np


def _session(path_or_bytes, threads: int, spinning: bool = True, level: str = "ORT_ENABLE_ALL"):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path_or_bytes, so, providers=["CPUExecutionProvider"])


def _parts(bundle: Path) -> tuple[Path, Path]:
    manifest = json.loads((bundle / "manifest.json").read_text())
    files = {role: p["file"] for role, p in manifest["parts"].items() if role != "llm"}
    if not all(f.endswith(".onnx") for f in files.values()) or len(files) != 2:
        raise SystemExit(f"{bundle}: needs an ONNX encoder and projector, has {files}")
    projector = files.pop("projector")
    return bundle / next(iter(files.values())), bundle / projector


class TwoSessions:
    def __init__(self, bundle: Path, threads: int, **kw):
        enc, proj = _parts(bundle)
        self.enc, self.proj = _session(str(enc), threads, **kw), _session(str(proj), threads, **kw)
        self.enc_in, self.proj_in = self.enc.get_inputs()[0].name, self.proj.get_inputs()[0].name

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        return self.proj.run(None, {self.proj_in: self.enc.run(None, {self.enc_in: tiles})[0]})[0]


class Merged:
    def __init__(self, bundle: Path, threads: int):
        import onnx
        from onnx import compose

        enc_path, proj_path = _parts(bundle)
        enc, proj = compose.add_prefix(onnx.load(str(enc_path)), "e/"), compose.add_prefix(onnx.load(str(proj_path)), "p/")
        merged = compose.merge_models(enc, proj, io_map=[(enc.graph.output[0].name, proj.graph.input[0].name)])
        self.session = _session(merged.SerializeToString(), threads)
        self.name = self.session.get_inputs()[0].name

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.name: tiles})[0]


def per_tile(run):
    return lambda tiles: np.concatenate([run(tiles[i : i + 1]) for i in range(len(tiles))])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--compare", action="append", default=[], help="NAME=BUNDLE, run as `runtime` (repeatable)")
    ap.add_argument("--tiles", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    from mmedge.runtime.embedding_cache import EmbeddingCache

    from .run_suite import machine_id

    manifest = json.loads((args.bundle / "manifest.json").read_text())
    enc_role = next(r for r in manifest["parts"] if r not in ("llm", "projector"))
    shape = [args.tiles, *manifest["parts"][enc_role]["inputs"][0]["shape"][1:]]
    tiles = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    log = lambda msg: print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)  # noqa: E731

    runtime = TwoSessions(args.bundle, args.threads)
    variants = {"runtime": runtime, "per-tile": per_tile(runtime), "merged": Merged(args.bundle, args.threads),
                "no-spin": TwoSessions(args.bundle, args.threads, spinning=False),
                "basic-opt": TwoSessions(args.bundle, args.threads, level="ORT_ENABLE_BASIC")}
    for item in args.compare:
        name, _, path = item.partition("=")
        variants[name] = TwoSessions(Path(path), args.threads)
    reference = variants["runtime"](tiles)
    agreement = {}
    for name, run in variants.items():  # also the warm-up
        out = run(tiles)
        agreement[name] = {"max_abs_diff": float(np.abs(out - reference).max()),
                           "cosine": float((out * reference).sum() / np.linalg.norm(out) / np.linalg.norm(reference))}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.reps):
        for name, run in variants.items():
            t0 = time.perf_counter()
            run(tiles)
            times[name].append((time.perf_counter() - t0) / args.tiles)
        log(f"round {r + 1}/{args.reps}: " + ", ".join(f"{n} {t[-1]:.3f}" for n, t in times.items()))
    lookups = []
    for _ in range(20):
        t0 = time.perf_counter()
        EmbeddingCache.key({"pixel_values": tiles[:1]})
        lookups.append(time.perf_counter() - t0)

    base = statistics.median(times["runtime"])
    rows = [{"variant": n, "per_tile_s": statistics.median(t), "values": t, "ratio_to_runtime": statistics.median(t) / base,
             **agreement[n]} for n, t in times.items()]
    rows.append({"variant": "cache-lookup", "per_tile_s": statistics.median(lookups), "values": lookups,
                 "ratio_to_runtime": statistics.median(lookups) / base})
    now = datetime.now(timezone.utc)
    out = args.out or Path(f"benchmarks/results/{now:%Y-%m-%d}-{machine_id()}-encoder-options")
    out.mkdir(parents=True, exist_ok=True)
    report = {"created": f"{now:%Y-%m-%dT%H:%M:%SZ}", "bundle": str(args.bundle), "compare": args.compare,
              "tile_shape": shape[1:], "tiles": args.tiles, "threads": args.threads, "reps": args.reps,
              "platform": platform.platform(), "processor": platform.processor(), "variants": rows}
    (out / "encoder_options.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Encoder options, {report['created']}", "",
             f"Bundle `{args.bundle}`; {args.tiles} tiles of {shape[1:]}; {args.threads} thread(s); {args.reps} "
             "interleaved rounds, medians (and minima) per tile.", "",
             "| variant | ms per tile (median) | min | / runtime (medians) | max abs diff vs runtime | cosine |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        diff = f"{row['max_abs_diff']:.2e}" if "max_abs_diff" in row else "–"
        cos = f"{row['cosine']:.6f}" if "cosine" in row else "–"
        lines.append(f"| {row['variant']} | {row['per_tile_s'] * 1e3:.1f} | {min(row['values']) * 1e3:.1f} | "
                     f"{row['ratio_to_runtime']:.3f} | {diff} | {cos} |")
    (out / "encoder_options.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
