"""The bench worker: measures one bundle in its own process and prints one JSON object on stdout.

    python -m mmedge.runtime.bench.worker BUNDLE [--image P ...] [--video P] [--prompt T]
        [--threads N] [--reps N] [--warmup N] [--max-tokens N] [--progress]

One process per bundle, so that the cold load is really cold and the peak RSS is this bundle's
alone. Everything comes from the command line and only the runtime install is needed, so the
same command can run on another machine (over ssh). With --progress, a line `STEP_PREFIX label`
goes to stderr after each load and run. Errors: one line on stderr, exit 2 (MmedgeError).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time

from mmedge.errors import MmedgeError

from .settings import add_arguments, settings_from_args
from .stats import summarize

STEP_PREFIX = "mmedge-bench-step:"
# The single stdout line's top-level keys.
OUTPUT_KEYS = ("machine", "result")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mmedge.runtime.bench.worker",
                                description="Measure one bundle; print one JSON object on stdout.")
    p.add_argument("bundle")
    add_arguments(p)
    p.add_argument("--progress", action="store_true", help=f"a '{STEP_PREFIX} ...' line on stderr after each step")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def step(label: str) -> None:
        if args.progress:
            print(f"{STEP_PREFIX} {label}", file=sys.stderr, flush=True)

    try:
        settings = settings_from_args(args)
        t0 = time.perf_counter()
        # The runtime's imports (numpy, Pillow, llama-cpp-python), timed: part of a cold start.
        from .machine import machine_info
        from .measure import measure_bundle
        import_s = time.perf_counter() - t0
        # Stray prints would corrupt the one JSON line: Python-level output goes to stderr meanwhile.
        with contextlib.redirect_stdout(sys.stderr):
            result = measure_bundle(args.bundle, settings, step)
            machine = machine_info()
        result["load"]["import_s"] = summarize([import_s])
    except MmedgeError as e:
        print(f"mmedge bench worker: error: {e}", file=sys.stderr)
        return e.exit_code
    print(json.dumps({"machine": machine, "result": result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
