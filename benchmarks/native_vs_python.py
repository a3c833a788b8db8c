"""The native runtime's stage times beside the Python runtime's, for one ExecuTorch + GGUF bundle,
measured side by side in one run (interleaved: Python, native, Python, native, ...).

    python -m benchmarks.native_vs_python BUNDLE [--image photo.png] [--tokens 32] [--threads 1]
        [--reps 5] [--out benchmarks/results/<UTC date>-<machine id>-native/]

Both runtimes load the bundle once, then answer the same greedy prompt about the same image
`--reps` times each; the first answer of each is a warm-up and is dropped. Stages: preprocess,
encode, project, prefill, time to first token, decode (tokens/s); plus load time and the tokens
(which must be equal: the script stops otherwise). Writes `native_vs_python.json` and `.md`
(medians, and native / Python ratios).
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

REPO = Path(__file__).resolve().parents[1]
STAGES = ("preprocess_s", "encode_s", "project_s", "prefill_s", "first_token_s", "decode_s")


def _python_run(pipe, image, prompt, tokens):
    from mmedge.runtime.pipeline import GenerationParams

    r = pipe.generate([image], prompt, GenerationParams(max_new_tokens=tokens, min_new_tokens=tokens))
    s = r.stats
    return r.tokens, {"preprocess_s": s.preprocess_s, "encode_s": s.encode_s, "project_s": s.project_s,
                      "prefill_s": s.prefill_s, "first_token_s": s.first_token_s, "decode_s": s.decode_s}


def _native_run(ctx, rgb, prompt, tokens):
    r = ctx.generate([rgb], prompt, max_new_tokens=tokens, min_new_tokens=tokens)
    return r.tokens, {k: r.stats[k] for k in STAGES}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle")
    p.add_argument("--image", help="a photo (default: scikit-image's astronaut)")
    p.add_argument("--prompt", default="Describe this image.")
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--lib", default=str(REPO / "native/build/libmmedge.so"))
    p.add_argument("--out")
    args = p.parse_args(argv)

    from PIL import Image

    sys.path.insert(0, str(REPO / "native/python"))
    from mmedge_native import NativeRuntime

    from mmedge.runtime.pipeline import Pipeline, RuntimeOptions

    if args.image:
        image = Image.open(args.image).convert("RGB")
    else:
        from skimage import data

        image = Image.fromarray(data.astronaut())
    rgb = (image.tobytes(), image.width, image.height)

    t0 = time.perf_counter()
    pipe = Pipeline(args.bundle, RuntimeOptions(threads=args.threads))
    python_load = time.perf_counter() - t0
    # The Python runtime opens first and sizes ExecuTorch's process-wide pool; native, asking the
    # same count, runs on it (runtime/executorch_pool.py). Unequal counts would be no comparison.
    if set(pipe.part_threads.values()) != {args.threads or pipe.llm.n_threads}:
        print(f"the Python runtime runs on {pipe.part_threads} threads, not {args.threads}", file=sys.stderr)
        return 1
    runtime = NativeRuntime(args.lib)
    t0 = time.perf_counter()
    ctx = runtime.open(args.bundle, n_threads=args.threads)
    native_load = time.perf_counter() - t0

    runs = {"python": [], "native": []}
    for rep in range(args.reps + 1):
        py_tokens, py = _python_run(pipe, image, args.prompt, args.tokens)
        nat_tokens, nat = _native_run(ctx, rgb, args.prompt, args.tokens)
        if py_tokens != nat_tokens:
            print(f"tokens differ: python {py_tokens[:8]}..., native {nat_tokens[:8]}...", file=sys.stderr)
            return 1
        if rep:  # the first round warms both up
            runs["python"].append(py)
            runs["native"].append(nat)
    ctx.close()
    pipe.close()

    medians = {who: {k: statistics.median(r[k] for r in rs) for k in STAGES} for who, rs in runs.items()}
    for who in medians:
        medians[who]["decode_tokens_per_s"] = (args.tokens - 1) / medians[who]["decode_s"]
    medians["python"]["load_s"], medians["native"]["load_s"] = python_load, native_load
    ratios = {k: medians["native"][k] / medians["python"][k] for k in medians["native"] if medians["python"][k]}
    result = {"bundle": str(args.bundle), "machine": platform.processor() or platform.machine(), "threads": args.threads,
              "python_part_threads": pipe.part_threads, "tokens": args.tokens, "reps": args.reps, "medians": medians,
              "native_over_python": ratios,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    lines = ["| stage | Python | native | native / Python |", "|---|---|---|---|"]
    for k in ("load_s", *STAGES, "decode_tokens_per_s"):
        unit = "tok/s" if k.endswith("per_s") else "ms"
        scale = 1 if unit == "tok/s" else 1000
        lines.append(f"| {k} | {medians['python'][k] * scale:.2f} {unit} | {medians['native'][k] * scale:.2f} {unit} | "
                     f"{ratios[k]:.2f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "native_vs_python.json").write_text(json.dumps(result, indent=2))
        (out / "native_vs_python.md").write_text(
            f"# Native vs Python runtime, {Path(args.bundle).name}\n\n{args.reps} rounds after a warm-up, "
            f"{args.threads} thread(s), {args.tokens} greedy tokens, identical in both; medians.\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
