"""Baseline: llama.cpp's own multimodal path (libmtmd), through llama-cpp-python's bindings.

llama-cpp-python 0.3.36 ships `lib/libmtmd.so` and its ctypes binding `llama_cpp/mtmd_cpp.py`.
The text model is any GGUF llama.cpp loads (an mmedge bundle's `llm.*.gguf`, or one from
llama.cpp's `convert_hf_to_gguf.py`); the vision side is an "mmproj" GGUF from
`convert_hf_to_gguf.py --mmproj` (see benchmarks/BASELINES.md for which checkpoints it takes).

Stages are timed apart, with the same split mmedge's `--stats` reports:

    mctx = mtmd_init_from_file(mmproj, model, mtmd_context_params)   # load (with the text model's)
    mtmd_bitmap_init(w, h, rgb)  +  mtmd_tokenize(mctx, chunks, text, bitmaps)
                                 -> "preprocess": resize / tiles / normalize in C++, and the prompt's tokens
    per image chunk:  mtmd_encode_chunk(mctx, chunk)             -> "encode" (vision tower + projector: clip
                                                                    runs both in one graph, so they are one stage)
                      mtmd_helper_decode_image_chunk(mctx, lctx, chunk, mtmd_get_output_embd(mctx), ...)
                                                                 -> "prefill" (image rows into the KV cache)
    per text chunk:   mtmd_helper_eval_chunk_single(...)         -> "prefill" (text tokens)
    then one llama_decode per token, greedy in C                 -> "decode"

    python -m benchmarks.baselines.llama_mtmd LLM.gguf MMPROJ.gguf IMAGE [--prompt TEXT] [--decode 32]

The prompt must hold `mtmd_default_marker()` ("<__media__>") where the image goes, in the model's
own chat format (mtmd does not apply a template; `llama_chat_apply_template` or the caller does).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import time
from pathlib import Path

FLASH_ATTN_DISABLED = 0
CHUNK_TEXT, CHUNK_IMAGE = 0, 1


def _load_rgb(image) -> tuple[int, int, bytes]:
    from PIL import Image

    img = image if isinstance(image, Image.Image) else Image.open(image)
    img = img.convert("RGB")
    return img.width, img.height, img.tobytes()


class MtmdBaseline:
    """A text GGUF and an mmproj GGUF loaded once; `generate` runs one image + prompt, timed by stage."""

    def __init__(self, llm_gguf: str | Path, mmproj_gguf: str | Path, threads: int = 0, n_ctx: int = 4096,
                 n_batch: int = 512, verbose: bool = False):
        import llama_cpp.llama_cpp as ll
        import llama_cpp.mtmd_cpp as mt

        self.ll, self.mt, self.n_batch = ll, mt, n_batch
        if not verbose:
            from . import raw_llama

            raw_llama._quiet_logs(ll)
            mt.mtmd_helper_log_set(raw_llama._QUIET, ctypes.c_void_p(0))
        threads = threads or (os.cpu_count() or 1)
        ll.llama_backend_init()
        t0 = time.perf_counter()
        self.model = ll.llama_model_load_from_file(str(llm_gguf).encode(), ll.llama_model_default_params())
        if not self.model:
            raise RuntimeError(f"{llm_gguf}: llama.cpp could not load it")
        cparams = ll.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = cparams.n_ubatch = n_batch
        cparams.n_seq_max = 1
        cparams.n_threads = cparams.n_threads_batch = threads
        cparams.flash_attn_type = FLASH_ATTN_DISABLED  # as mmedge's runtime
        self.lctx = ll.llama_init_from_model(self.model, cparams)
        mparams = mt.mtmd_context_params_default()
        mparams.use_gpu = False
        mparams.n_threads = threads
        mparams.print_timings = verbose
        mparams.flash_attn_type = FLASH_ATTN_DISABLED
        self.mctx = mt.mtmd_init_from_file(str(mmproj_gguf).encode(), self.model, mparams)
        if not self.mctx:
            self.close()
            raise RuntimeError(f"{mmproj_gguf}: mtmd_init_from_file failed (verbose=True shows llama.cpp's reason)")
        self.load_s = time.perf_counter() - t0
        self.vocab = ll.llama_model_get_vocab(self.model)
        self.sampler = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        ll.llama_sampler_chain_add(self.sampler, ll.llama_sampler_init_greedy())

    def generate(self, image, prompt: str, n_decode: int = 32) -> dict:
        """Times (s) per stage, token counts, the greedy token ids and their text. End-of-generation
        is ignored, so `n_decode` tokens always come (as the benchmark's min_new_tokens)."""
        ll, mt = self.ll, self.mt
        ll.llama_memory_clear(ll.llama_get_memory(self.lctx), True)
        w, h, rgb = _load_rgb(image)
        chunks = mt.mtmd_input_chunks_init()
        bitmap = None
        try:
            t0 = time.perf_counter()
            data = (ctypes.c_uint8 * len(rgb)).from_buffer_copy(rgb)
            bitmap = mt.mtmd_bitmap_init(w, h, data)
            text_bytes = prompt.encode()
            text = mt.mtmd_input_text(text=text_bytes, text_len=len(text_bytes), add_special=True, parse_special=True)
            rc = mt.mtmd_tokenize(self.mctx, chunks, ctypes.byref(text), (mt.mtmd_bitmap_p_ctypes * 1)(bitmap), 1)
            if rc != 0:
                raise RuntimeError(f"mtmd_tokenize returned {rc} (1: markers != images, 2: preprocessing failed)")
            preprocess_s = time.perf_counter() - t0
            n_chunks = mt.mtmd_input_chunks_size(chunks)
            if mt.mtmd_input_chunk_get_type(mt.mtmd_input_chunks_get(chunks, n_chunks - 1)) != CHUNK_TEXT:
                raise RuntimeError("the prompt must end with text (the logits come from the last text chunk)")

            encode_s = prefill_image_s = prefill_text_s = 0.0
            n_past, new_n_past = 0, ll.llama_pos(0)
            counts = {"text_tokens": 0, "image_tokens": 0, "image_chunks": 0}
            for i in range(n_chunks):
                chunk = mt.mtmd_input_chunks_get(chunks, i)
                n_tok = mt.mtmd_input_chunk_get_n_tokens(chunk)
                if mt.mtmd_input_chunk_get_type(chunk) == CHUNK_IMAGE:
                    t0 = time.perf_counter()
                    if mt.mtmd_encode_chunk(self.mctx, chunk) != 0:
                        raise RuntimeError(f"mtmd_encode_chunk failed on chunk {i}")
                    embd = mt.mtmd_get_output_embd(self.mctx)
                    t1 = time.perf_counter()
                    rc = mt.mtmd_helper_decode_image_chunk(self.mctx, self.lctx, chunk, embd, n_past, 0, self.n_batch,
                                                           ctypes.byref(new_n_past), mt.mtmd_helper_post_decode_callback(),
                                                           None)
                    if rc != 0:
                        raise RuntimeError(f"mtmd_helper_decode_image_chunk returned {rc}")
                    encode_s += t1 - t0
                    prefill_image_s += time.perf_counter() - t1
                    counts["image_tokens"] += n_tok
                    counts["image_chunks"] += 1
                else:
                    t0 = time.perf_counter()
                    rc = mt.mtmd_helper_eval_chunk_single(self.mctx, self.lctx, chunk, n_past, 0, self.n_batch,
                                                          i == n_chunks - 1, ctypes.byref(new_n_past))
                    if rc != 0:
                        raise RuntimeError(f"mtmd_helper_eval_chunk_single returned {rc} on text chunk {i}")
                    prefill_text_s += time.perf_counter() - t0
                    counts["text_tokens"] += n_tok
                n_past = new_n_past.value
        finally:
            if bitmap:
                mt.mtmd_bitmap_free(bitmap)
            mt.mtmd_input_chunks_free(chunks)

        token = (ll.llama_token * 1)()
        t0 = time.perf_counter()
        token[0] = ll.llama_sampler_sample(self.sampler, self.lctx, -1)
        first_token_s = time.perf_counter() - t0
        generated = [int(token[0])]
        t0 = time.perf_counter()
        for _ in range(n_decode - 1):
            if ll.llama_decode(self.lctx, ll.llama_batch_get_one(token, 1)) != 0:
                raise RuntimeError("llama_decode failed while decoding")
            token[0] = ll.llama_sampler_sample(self.sampler, self.lctx, -1)
            generated.append(int(token[0]))
        decode_s = time.perf_counter() - t0
        return {
            "preprocess_s": preprocess_s, "encode_s": encode_s, "prefill_image_s": prefill_image_s,
            "prefill_text_s": prefill_text_s, "prefill_s": prefill_image_s + prefill_text_s,
            "first_token_s": first_token_s, "decode_s": decode_s,
            "decode_tokens_per_s": (n_decode - 1) / decode_s if n_decode > 1 else float("nan"),
            "prompt_positions": n_past, "chunks": n_chunks, **counts,
            "tokens": generated, "text": self.detokenize(generated),
        }

    def encode_chunks(self, image, prompt: str, max_chunks: int | None = None) -> list[float]:
        """Only the encoder: tokenize, then `mtmd_encode_chunk` on each image chunk (at most
        `max_chunks`); seconds per chunk. Nothing enters the KV cache (no text is decoded)."""
        mt = self.mt
        w, h, rgb = _load_rgb(image)
        chunks = mt.mtmd_input_chunks_init()
        bitmap = mt.mtmd_bitmap_init(w, h, (ctypes.c_uint8 * len(rgb)).from_buffer_copy(rgb))
        try:
            text_bytes = prompt.encode()
            text = mt.mtmd_input_text(text=text_bytes, text_len=len(text_bytes), add_special=True, parse_special=True)
            if mt.mtmd_tokenize(self.mctx, chunks, ctypes.byref(text), (mt.mtmd_bitmap_p_ctypes * 1)(bitmap), 1) != 0:
                raise RuntimeError("mtmd_tokenize failed")
            times = []
            for i in range(mt.mtmd_input_chunks_size(chunks)):
                chunk = mt.mtmd_input_chunks_get(chunks, i)
                if mt.mtmd_input_chunk_get_type(chunk) != CHUNK_IMAGE:
                    continue
                if max_chunks is not None and len(times) >= max_chunks:
                    break
                t0 = time.perf_counter()
                if mt.mtmd_encode_chunk(self.mctx, chunk) != 0:
                    raise RuntimeError(f"mtmd_encode_chunk failed on chunk {i}")
                times.append(time.perf_counter() - t0)
            return times
        finally:
            mt.mtmd_bitmap_free(bitmap)
            mt.mtmd_input_chunks_free(chunks)

    def detokenize(self, tokens: list[int]) -> str:
        buf = ctypes.create_string_buffer(256)
        pieces = []
        for tok in tokens:
            n = self.ll.llama_token_to_piece(self.vocab, tok, buf, len(buf), 0, False)
            pieces.append(buf.raw[: max(n, 0)])
        return b"".join(pieces).decode("utf-8", "replace")

    def close(self) -> None:
        ll, mt = self.ll, self.mt
        if getattr(self, "sampler", None):
            ll.llama_sampler_free(self.sampler)
            self.sampler = None
        if getattr(self, "mctx", None):
            mt.mtmd_free(self.mctx)
            self.mctx = None
        if getattr(self, "lctx", None):
            ll.llama_free(self.lctx)
            self.lctx = None
        if getattr(self, "model", None):
            ll.llama_model_free(self.model)
            self.model = None


def mtmd_generate(llm_gguf: str | Path, mmproj_gguf: str | Path, image, prompt: str, n_decode: int = 32,
                  threads: int = 0, n_ctx: int = 4096, reps: int = 3, verbose: bool = False) -> dict:
    """Load once, run a warm-up, then `reps` timed runs; the median of each stage, plus the last
    run's counts and tokens."""
    import statistics

    base = MtmdBaseline(llm_gguf, mmproj_gguf, threads, n_ctx, verbose=verbose)
    try:
        base.generate(image, prompt, n_decode)  # warm-up: graphs are allocated on first use
        runs = [base.generate(image, prompt, n_decode) for _ in range(reps)]
    finally:
        base.close()
    out = dict(runs[-1])
    for key in ("preprocess_s", "encode_s", "prefill_image_s", "prefill_text_s", "prefill_s", "first_token_s",
                "decode_s", "decode_tokens_per_s"):
        out[key] = statistics.median(r[key] for r in runs)
    return {"load_s": base.load_s, "reps": reps, **out}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("llm")
    ap.add_argument("mmproj")
    ap.add_argument("image")
    ap.add_argument("--prompt", default=None, help="with <__media__> where the image goes (default: a SmolVLM-style turn)")
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--verbose", action="store_true", help="llama.cpp's and mtmd's logs on stderr")
    args = ap.parse_args(argv)
    prompt = args.prompt or "User:<__media__> Describe the picture.<end_of_utterance>\nAssistant:"
    r = mtmd_generate(args.llm, args.mmproj, args.image, prompt, args.decode, args.threads, args.ctx, args.reps,
                      verbose=args.verbose)
    print(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
