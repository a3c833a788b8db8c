"""Two handles that ask ExecuTorch's process-wide thread pool for different sizes, in a process of
its own (a run on a freed pool is heap corruption: the parent must see it as a signal or a
sanitizer report, not lose the test run). Prints JSON: the greedy tokens of handle A (2 threads),
of handle B (3 threads, opened while A is alive), of A again after B, and of C (3 threads,
opened after both closed). `python -m tests.native.shared_pool_runner LIB BUNDLE`."""
from __future__ import annotations

import json
import sys

PROMPT = "Tell me a story about a cat."


def main(lib: str, bundle: str) -> int:
    from .native_helpers import binding

    runtime = binding().NativeRuntime(lib)
    image = (bytes(range(256)) * 3 * 64, 256, 64)  # a fixed gradient: no files, no PIL

    def tokens(ctx):
        return ctx.generate([image], PROMPT, max_new_tokens=8, min_new_tokens=8).tokens

    out = {}
    with runtime.open(bundle, n_threads=2, n_ctx=1024) as a:
        out["a"] = tokens(a)
        with runtime.open(bundle, n_threads=3, n_ctx=1024) as b:
            out["b"] = tokens(b)
            out["a_again"] = tokens(a)
    with runtime.open(bundle, n_threads=3, n_ctx=1024) as c:
        out["c"] = tokens(c)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
