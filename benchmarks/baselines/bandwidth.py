"""Baseline: the memory-bandwidth bound on decode speed.

Decoding one token reads every weight of the LLM once (a GEMV per matrix) plus the KV cache; with
weights much larger than the caches, a CPU cannot decode faster than

    tokens/s  <=  bandwidth / (bytes of weights read per token + bytes of KV cache read per token)

Bandwidth is measured here with numpy on arrays far larger than the last-level cache (default
512 MiB per array, 16x a 32 MiB L3), STREAM-style, best of several repetitions:

- `read`: `np.max` over a float32 array (a SIMD reduction that streams its operand: 1 x bytes),
  in one thread and in `threads` Python threads on disjoint slices (numpy releases the GIL in its
  loops), because llama.cpp decodes on every core and one core may not saturate the bus.
  (`np.sum` on float32 is slower than memory here: pairwise summation is compute-bound at ~10 GB/s.)
- `dot`: `np.dot(a, b)` on two float32 vectors through BLAS sdot (2 x bytes, multithreaded).
- `copy`: `np.copyto(b, a)` (STREAM Copy: counts 2 x bytes; the write-allocate read is not counted,
  as STREAM does not count it).
- `triad`: `a = b + s*c` as two numpy passes; STREAM counts 3 x bytes, numpy moves 5 x, so the
  reported figure is the STREAM-convention one (lower than the bus can do).
- `gemv`: float32 matrix @ vector through numpy's BLAS (what decode does, multithreaded by BLAS).

The bound uses the largest read-type figure (`read`, `dot`, `gemv`): decode is reads. Weight bytes come
from the GGUF's tensor table (the file's own sizes for its quantization): every tensor except
`token_embd` (decode reads one row of it) unless the model has no `output` tensor (tied head: then
`token_embd` is the LM head and read whole). KV cache bytes per token = 2 (K and V) x layers x
context length x KV heads x head size x 2 bytes (llama.cpp's default F16 cache).

    python -m benchmarks.baselines.bandwidth [GGUF_OR_BUNDLE ...] [--mib 512] [--threads N] [--ctx 1024]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def _best(fn, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_bandwidth(mib: int = 512, threads: int = 0, reps: int = 5) -> dict:
    """GB/s (1e9 bytes/s) of the read, copy, triad and gemv kernels on `mib` MiB float32 arrays."""
    threads = threads or (os.cpu_count() or 1)
    n = mib * (1 << 20) // 4
    a = np.ones(n, dtype=np.float32)
    b = np.full(n, 2.0, dtype=np.float32)
    c = np.full(n, 0.5, dtype=np.float32)
    nbytes = a.nbytes
    out: dict = {"array_mib": mib, "threads": threads}

    slices = [a[i * n // threads : (i + 1) * n // threads] for i in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        read_mt = _best(lambda: list(pool.map(np.max, slices)), reps)
    out["read_GBps"] = nbytes / read_mt / 1e9
    out["read_1thread_GBps"] = nbytes / _best(lambda: np.max(a), reps) / 1e9
    out["dot_GBps"] = 2 * nbytes / _best(lambda: np.dot(a, b), reps) / 1e9
    out["copy_GBps"] = 2 * nbytes / _best(lambda: np.copyto(b, a), reps) / 1e9

    def triad():
        np.multiply(c, 3.0, out=a)
        np.add(a, b, out=a)

    out["triad_GBps"] = 3 * nbytes / _best(triad, reps) / 1e9
    del c
    rows = 4096
    w = b[: (n // rows) * rows].reshape(rows, -1)  # reuse b's memory: [4096, n/4096]
    x = np.ones(w.shape[1], dtype=np.float32)
    out["gemv_GBps"] = w.nbytes / _best(lambda: w @ x, reps) / 1e9
    out["bandwidth_GBps"] = max(out["read_GBps"], out["read_1thread_GBps"], out["dot_GBps"], out["gemv_GBps"])
    return out


def gguf_bytes_per_token(path: str | Path, n_ctx: int = 0) -> dict:
    """Bytes read per decoded token: weights (GGUF tensor sizes) and the F16 KV cache at `n_ctx`."""
    from gguf import GGUFReader

    path = Path(path)
    if path.is_dir():  # an mmedge bundle
        path = path / json.loads((path / "manifest.json").read_text())["parts"]["llm"]["file"]
    reader = GGUFReader(str(path))
    sizes = {t.name: int(t.n_bytes) for t in reader.tensors}
    shapes = {t.name: [int(d) for d in t.shape] for t in reader.tensors}
    tied = "output.weight" not in sizes
    weights = sum(v for k, v in sizes.items() if k != "token_embd.weight" or tied)
    if not tied:
        emb = shapes["token_embd.weight"]  # [n_embd, n_vocab] in GGUF order
        weights += sizes["token_embd.weight"] // emb[-1]  # one row
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()

    def field(key):
        f = reader.fields.get(f"{arch}.{key}")
        return int(f.parts[-1][0]) if f is not None else None

    n_layer, n_head = field("block_count"), field("attention.head_count")
    n_kv = field("attention.head_count_kv") or n_head
    head_dim = field("attention.key_length") or field("embedding_length") // n_head
    kv = 2 * n_layer * n_ctx * n_kv * head_dim * 2
    return {"gguf": str(path), "weights_bytes": weights, "tied_head": tied, "kv_bytes_at_ctx": kv, "n_ctx": n_ctx,
            "file_bytes": path.stat().st_size}


def decode_bound(bandwidth_GBps: float, bytes_per_token: dict) -> float:
    """The tokens/s a decoder cannot beat at this bandwidth."""
    return bandwidth_GBps * 1e9 / (bytes_per_token["weights_bytes"] + bytes_per_token["kv_bytes_at_ctx"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", help="GGUF files or mmedge bundles to compute the bound for")
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--ctx", type=int, default=1024, help="KV length at decode time")
    args = ap.parse_args(argv)
    bw = measure_bandwidth(args.mib, args.threads, args.reps)
    result = {"bandwidth": bw, "models": []}
    for m in args.models:
        b = gguf_bytes_per_token(m, args.ctx)
        result["models"].append({**b, "bound_tokens_per_s": decode_bound(bw["bandwidth_GBps"], b)})
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
