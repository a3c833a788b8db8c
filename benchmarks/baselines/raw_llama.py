"""Baseline: llama.cpp decoding a GGUF with no mmedge code around it.

Only llama-cpp-python's low-level C bindings (`llama_cpp.llama_cpp`, a ctypes mirror of llama.h),
in the order llama.cpp's own `examples/simple` uses them:

    llama_backend_init()
    model = llama_model_load_from_file(path, llama_model_default_params())
    ctx   = llama_init_from_model(model, cparams)          # same n_ctx / n_batch / threads / flash-attn
                                                            # setting as mmedge's runtime (runtime/llamacpp.py)
    llama_decode(ctx, batch of n_prompt token ids)          # prefill, timed
    loop: llama_decode(ctx, llama_batch_get_one(&tok, 1))   # one token per step, timed
          tok = llama_sampler_sample(greedy, ctx, -1)       # argmax in C, timed apart
    llama_perf_context(ctx)                                 # llama.cpp's own eval timers, for cross-checking

The prompt is `n_prompt` token ids (a tokenized text, repeated), so the KV cache at decode time can
be made as long as mmedge's prompt with its image rows (attention cost depends on the length, not on
whether a row was a token or an embedding). End-of-generation tokens are not special: the loop
always runs `n_decode` steps, as the benchmark's `min_new_tokens` does for mmedge.

    python -m benchmarks.baselines.raw_llama BUNDLE_OR_GGUF [--prompt-tokens 64] [--decode 32] [--threads 0]
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import sys
import time
from pathlib import Path

GGML_TYPE_F32 = 0
FLASH_ATTN_DISABLED = 0
TEXT = "Describe the picture in detail, then answer the question briefly. "


_QUIET = None  # llama.cpp keeps the callback's address for the life of the process: so must we


def _quiet_logs(ll) -> None:
    global _QUIET
    if _QUIET is None:
        @ll.llama_log_callback
        def _quiet(level, text, user_data):  # noqa: ARG001
            return None

        _QUIET = _quiet
    ll.llama_log_set(_QUIET, ctypes.c_void_p(0))


def gguf_of(path: str | Path) -> Path:
    """A GGUF file, or the LLM part of an mmedge bundle folder."""
    path = Path(path)
    if path.is_dir():
        manifest = json.loads((path / "manifest.json").read_text())
        return path / manifest["parts"]["llm"]["file"]
    return path


def raw_decode(gguf: str | Path, n_prompt: int = 64, n_decode: int = 32, threads: int = 0, n_ctx: int = 4096,
               n_batch: int = 512, exact: bool = False) -> dict:
    """Prefill `n_prompt` tokens, then decode `n_decode` tokens one llama_decode at a time.

    Returns seconds: load, prefill, every decode step (`decode_steps_s`: llama_decode alone;
    `sample_steps_s`: the greedy sampler), their sums, tokens/s over the decode loop, and
    llama.cpp's own `llama_perf_context` numbers for the same run.
    """
    import llama_cpp.llama_cpp as ll

    if not os.environ.get("MMEDGE_LLAMA_LOG"):
        _quiet_logs(ll)
    ll.llama_backend_init()
    t0 = time.perf_counter()
    mparams = ll.llama_model_default_params()
    model = ll.llama_model_load_from_file(str(gguf_of(gguf)).encode(), mparams)
    if not model:
        raise RuntimeError(f"{gguf}: llama.cpp could not load it")
    cparams = ll.llama_context_default_params()
    cparams.n_ctx = n_ctx
    cparams.n_batch = cparams.n_ubatch = n_batch
    cparams.n_seq_max = 1
    cparams.n_threads = cparams.n_threads_batch = threads or (os.cpu_count() or 1)
    cparams.flash_attn_type = FLASH_ATTN_DISABLED  # as mmedge's runtime, both modes
    cparams.no_perf = False  # llama_perf_context's timers (off by default)
    if exact:
        cparams.type_k = cparams.type_v = GGML_TYPE_F32
    ctx = ll.llama_init_from_model(model, cparams)
    if not ctx:
        ll.llama_model_free(model)
        raise RuntimeError(f"could not create a context of {n_ctx}")
    load_s = time.perf_counter() - t0
    vocab = ll.llama_model_get_vocab(model)
    sampler = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
    ll.llama_sampler_chain_add(sampler, ll.llama_sampler_init_greedy())
    try:
        # The prompt: a tokenized sentence repeated to n_prompt ids.
        data = TEXT.encode()
        buf = (ll.llama_token * (len(data) + 8))()
        n = ll.llama_tokenize(vocab, data, len(data), buf, len(buf), False, False)
        if n <= 0:
            raise RuntimeError(f"llama_tokenize returned {n}")
        prompt = [buf[i % n] for i in range(n_prompt)]
        if n_prompt + n_decode > n_ctx:
            raise ValueError(f"{n_prompt} + {n_decode} positions do not fit n_ctx={n_ctx}")

        batch = ll.llama_batch_init(n_batch, 0, 1)

        def prefill() -> float:
            t0 = time.perf_counter()
            for start in range(0, n_prompt, n_batch):
                chunk = prompt[start : start + n_batch]
                for i, tok in enumerate(chunk):
                    batch.token[i] = tok
                    batch.pos[i] = start + i
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = start + i == n_prompt - 1
                batch.n_tokens = len(chunk)
                if ll.llama_decode(ctx, batch) != 0:
                    raise RuntimeError("llama_decode failed in the prefill")
            return time.perf_counter() - t0

        token = (ll.llama_token * 1)()
        # Warm-up: the first decode of each batch shape allocates its compute graph.
        prefill()
        token[0] = prompt[0]
        ll.llama_decode(ctx, ll.llama_batch_get_one(token, 1))
        ll.llama_synchronize(ctx)  # else the warm-up's queued tokens count into the timed prefill's perf
        ll.llama_memory_clear(ll.llama_get_memory(ctx), True)
        ll.llama_perf_context_reset(ctx)
        prefill_s = prefill()
        ll.llama_batch_free(batch)

        t0 = time.perf_counter()
        token[0] = ll.llama_sampler_sample(sampler, ctx, -1)
        first_sample_s = time.perf_counter() - t0
        decode_steps, sample_steps, generated = [], [], [int(token[0])]
        t_loop = time.perf_counter()
        for _ in range(n_decode):
            t0 = time.perf_counter()
            if ll.llama_decode(ctx, ll.llama_batch_get_one(token, 1)) != 0:
                raise RuntimeError("llama_decode failed while decoding")
            t1 = time.perf_counter()
            token[0] = ll.llama_sampler_sample(sampler, ctx, -1)
            sample_steps.append(time.perf_counter() - t1)
            decode_steps.append(t1 - t0)
            generated.append(int(token[0]))
        loop_s = time.perf_counter() - t_loop
        perf = ll.llama_perf_context(ctx)
        return {
            "gguf": str(gguf_of(gguf)), "threads": int(cparams.n_threads), "n_prompt": n_prompt, "n_decode": n_decode,
            "load_s": load_s, "prefill_s": prefill_s, "first_sample_s": first_sample_s,
            "decode_steps_s": decode_steps, "sample_steps_s": sample_steps,
            "decode_median_s": statistics.median(decode_steps), "decode_total_s": loop_s,
            "decode_tokens_per_s": n_decode / loop_s,
            "llama_perf": {"prefill_ms": perf.t_p_eval_ms, "n_prefill": perf.n_p_eval,
                           "decode_ms": perf.t_eval_ms, "n_decode": perf.n_eval},
            "tokens": generated,
        }
    finally:
        ll.llama_sampler_free(sampler)
        ll.llama_free(ctx)
        ll.llama_model_free(model)


def mmedge_decode(bundle: str | Path, n_decode: int = 32, threads: int = 0, reps: int = 3,
                  prompt: str = TEXT) -> dict:
    """The same measurement through mmedge's runtime (Pipeline.generate, text only, greedy, EOS banned):
    what `raw_decode` is compared with. Returns the median decode s/token, the prompt length (so
    `raw_decode` can be given the same `n_prompt`) and mmedge's own time outside llama_decode per
    token, measured in the same run by timing every llama_decode call (robust to a noisy machine,
    unlike the difference of two runs)."""
    from mmedge.runtime import llamacpp
    from mmedge.runtime.pipeline import GenerationParams, Pipeline, RuntimeOptions

    inside = [0.0]
    real_decode = llamacpp._ll.llama_decode

    def timed_decode(ctx, batch):
        if batch.n_tokens != 1:  # the prompt: not a decode step
            return real_decode(ctx, batch)
        t0 = time.perf_counter()
        try:
            return real_decode(ctx, batch)
        finally:
            inside[0] += time.perf_counter() - t0

    pipe = Pipeline(str(bundle), RuntimeOptions(threads=threads, n_ctx=4096))
    params = GenerationParams(max_new_tokens=n_decode + 1, min_new_tokens=n_decode + 1)
    runs, outside = [], []
    llamacpp._ll.llama_decode = timed_decode
    try:
        pipe.generate([], prompt, params)  # warm-up
        for _ in range(reps):
            inside[0] = 0.0
            stats = pipe.generate([], prompt, params).stats
            runs.append(stats)
            outside.append((stats.decode_s - inside[0]) / (stats.new_tokens - 1))
    finally:
        llamacpp._ll.llama_decode = real_decode
        pipe.close()
    per_token = [r.decode_s / (r.new_tokens - 1) for r in runs]
    return {"prompt_positions": runs[0].prompt_positions, "decode_step_s": statistics.median(per_token),
            "outside_llama_decode_s_per_token": statistics.median(outside),
            "decode_tokens_per_s": statistics.median(r.decode_tokens_per_s for r in runs),
            "prefill_s": statistics.median(r.prefill_s for r in runs)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gguf", help="a GGUF file or an mmedge bundle folder")
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--vs-mmedge", action="store_true",
                    help="GGUF must be a bundle: also decode through mmedge's runtime, same prompt length, side by side")
    args = ap.parse_args(argv)
    ours = None
    if args.vs_mmedge:
        ours = mmedge_decode(args.gguf, args.decode, args.threads, args.reps)
        args.prompt_tokens = ours["prompt_positions"]
    runs = [raw_decode(args.gguf, args.prompt_tokens, args.decode, args.threads, args.ctx) for _ in range(args.reps)]
    med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
    print(json.dumps({"gguf": runs[0]["gguf"], "threads": runs[0]["threads"], "reps": args.reps,
                      "prefill_ms": med("prefill_s") * 1e3, "decode_step_ms": med("decode_median_s") * 1e3,
                      "sample_step_ms": statistics.median(s for r in runs for s in r["sample_steps_s"]) * 1e3,
                      "step_total_ms": med("decode_total_s") / args.decode * 1e3,
                      "outside_llama_decode_ms_per_token": statistics.median(
                          (r["decode_total_s"] - sum(r["decode_steps_s"])) / r["n_decode"] for r in runs) * 1e3,
                      "decode_tokens_per_s": med("decode_tokens_per_s"),
                      "llama_perf_decode_ms_per_token": statistics.median(
                          r["llama_perf"]["decode_ms"] / max(r["llama_perf"]["n_decode"], 1) for r in runs),
                      **({"mmedge": {"prompt_positions": ours["prompt_positions"],
                                     "decode_step_ms": ours["decode_step_s"] * 1e3,
                                     "decode_tokens_per_s": ours["decode_tokens_per_s"],
                                     "outside_llama_decode_ms_per_token": ours["outside_llama_decode_s_per_token"] * 1e3,
                                     "ratio_to_raw": ours["decode_step_s"] / (med("decode_total_s") / args.decode)}}
                         if ours else {})}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
