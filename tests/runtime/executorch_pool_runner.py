"""The Python runtime's .pte parts and ExecuTorch's process-wide thread pool, in a process of its
own (the pool is per process, and the test process shares it with other tests). Prints JSON:
for pipelines A (1 thread), B (2 threads, opened while A is alive) and C (2 threads, opened after
both closed): the pool's size after opening, the parts' thread counts, placement notes, and
greedy tokens. `python -m tests.runtime.executorch_pool_runner BUNDLE`."""
from __future__ import annotations

import gc
import json
import sys

import numpy as np


def main(bundle: str) -> int:
    from mmedge.runtime.executorch_pool import pool_threads
    from mmedge.runtime.pipeline import GenerationParams, Pipeline, RuntimeOptions

    image = np.tile(np.arange(256, dtype=np.uint8), (64, 3)).reshape(64, 256, 3)  # a fixed gradient
    params = GenerationParams(max_new_tokens=8, min_new_tokens=8)

    def opened(threads):
        pipe = Pipeline(bundle, RuntimeOptions(exact=True, threads=threads, n_ctx=1024))
        return pipe, {"pool": pool_threads(), "parts": pipe.part_threads, "notes": pipe.placement_notes}

    def tokens(pipe):
        from PIL import Image
        return pipe.generate([Image.fromarray(image)], "Tell me a story about a cat.", params).tokens

    a, out_a = opened(1)
    out_a["tokens"] = tokens(a)
    b, out_b = opened(2)
    out_b["tokens"] = tokens(b)
    out_a["tokens_again"] = tokens(a)
    a.close(), b.close()
    del a, b
    gc.collect()
    c, out_c = opened(2)
    out_c["tokens"] = tokens(c)
    print(json.dumps({"a": out_a, "b": out_b, "c": out_c}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
