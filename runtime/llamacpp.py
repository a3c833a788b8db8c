"""The LLM part on llama.cpp, through llama-cpp-python's low-level C bindings.

Text tokens and image embeddings go into one KV cache through `llama_batch`: tokens in a
token batch, embeddings in a batch made by `llama_batch_init(n, n_embd, 1)`. Every call
is checked here first, because llama.cpp aborts the whole process on some misuse (a batch
larger than `n_batch`, a position past the context).
"""
from __future__ import annotations

import ctypes
import os
from typing import Callable
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmedge.errors import BackendError, PromptError

from .gguf_check import read_gguf_header
from .mrope_mask import causal_runs
from .threads import resolve_threads

try:
    import llama_cpp as _ll
except ImportError as _e:  # pragma: no cover - depends on the install
    _ll = None
    _IMPORT_ERROR = _e

# ggml_type ids (ggml.h): the KV cache type in exact mode.
GGML_TYPE_F32 = 0
GGML_TYPE_F16 = 1
# llama_flash_attn_type (llama.h)
FLASH_ATTN_DISABLED = 0
# llama_token_attr bits (llama.h)
_ATTR_CONTROL = 1 << 3
_ATTR_USER_DEFINED = 1 << 4
# llama_rope_type values whose models take several positions per embedding row (llama.h)
_MULTI_POSITION_ROPE = (8, 40)  # MROPE (Qwen2-VL), IMROPE
_POS_PER_ROW = 4  # llama.cpp's M-RoPE sections: temporal, height, width, unused

_NO_ABORT_CALLBACK = _ll.ggml_abort_callback() if _ll is not None else None  # a NULL function pointer
_backend_ready = False
_log_callback = None  # kept alive for as long as llama.cpp may call it


def _require() -> None:
    if _ll is None:
        raise BackendError(
            f"llama-cpp-python is not installed ({_IMPORT_ERROR}); install mmedge's runtime extra: "
            "pip install 'mmedge[runtime]'"
        )


def _init_backend() -> None:
    global _backend_ready, _log_callback
    if _backend_ready:
        return
    _require()
    if not os.environ.get("MMEDGE_LLAMA_LOG"):
        # llama.cpp logs every tensor at load time; keep stderr for our own messages.
        @_ll.llama_log_callback
        def _quiet(level, text, user_data):  # noqa: ARG001
            return None

        _log_callback = _quiet
        _ll.llama_log_set(_log_callback, ctypes.c_void_p(0))
    _ll.llama_backend_init()
    _backend_ready = True


def gpu_offload_available() -> bool:
    _require()
    return bool(_ll.llama_supports_gpu_offload())


def system_info() -> str:
    """llama.cpp's build and CPU feature string ("CPU : AVX2 = 1 | ..."), as llama.cpp prints it."""
    _require()
    return _ll.llama_print_system_info().decode("utf-8", errors="replace").strip()


@dataclass(frozen=True)
class LlamaOptions:
    n_ctx: int = 4096
    n_batch: int = 512
    n_threads: int = 0  # 0: the cores this process may use (runtime/threads.py)
    # exact: flash attention off and an F32 KV cache, so the logits match PyTorch to ~1e-6.
    exact: bool = False
    n_gpu_layers: int = 0


class DecodeStopped(Exception):
    """`LlamaModel.should_stop` said stop, before a llama_decode call or inside a multi-row one
    (control flow, not an error)."""


_LLAMA_DECODE_ABORTED = 2  # llama_decode's return code when the abort callback said stop


class LlamaModel:
    """One GGUF model with one context (one sequence)."""

    def __init__(self, path: str | Path, options: LlamaOptions):
        _init_backend()
        self.options = options
        mparams = _ll.llama_model_default_params()
        mparams.n_gpu_layers = options.n_gpu_layers
        # Our own structural check first: malformed GGUF headers have crashed llama.cpp's loader.
        self.header = read_gguf_header(path)
        self.model = _ll.llama_model_load_from_file(str(path).encode(), mparams)
        if not self.model:
            raise BackendError(f"{path}: llama.cpp could not load this GGUF file; it is damaged or of an unsupported architecture")
        self.vocab = _ll.llama_model_get_vocab(self.model)
        self.n_vocab = int(_ll.llama_vocab_n_tokens(self.vocab))
        self.n_embd = int(_ll.llama_model_n_embd_inp(self.model))  # the input width, which embeddings must match
        self.n_ctx_train = int(_ll.llama_model_n_ctx_train(self.model))

        cparams = _ll.llama_context_default_params()
        n_ctx = min(options.n_ctx, self.n_ctx_train) if options.n_ctx else self.n_ctx_train
        cparams.n_ctx = n_ctx
        cparams.n_batch = options.n_batch
        cparams.n_ubatch = options.n_batch
        cparams.n_seq_max = 1
        threads = resolve_threads(options.n_threads)
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        # Off in both modes: exactness needs it off, and on CPU it decodes slower.
        cparams.flash_attn_type = FLASH_ATTN_DISABLED
        if options.exact:
            cparams.type_k = GGML_TYPE_F32
            cparams.type_v = GGML_TYPE_F32
        self.ctx = _ll.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            _ll.llama_model_free(self.model)
            self.model = None
            raise BackendError(f"{path}: llama.cpp could not create a context (n_ctx={n_ctx}); lower --ctx")
        self.n_ctx = int(_ll.llama_n_ctx(self.ctx))
        self.n_batch = int(_ll.llama_n_batch(self.ctx))
        self._token_batch = _ll.llama_batch_init(self.n_batch, 0, 1)
        self._embd_batch = _ll.llama_batch_init(self.n_batch, self.n_embd, 1)
        # M-RoPE: embedding batches carry 4 positions per row, section-major; llama_batch_init
        # allocates one per row, so those batches point at this buffer while decoding.
        self.mrope = int(_ll.llama_model_rope_type(self.model)) in _MULTI_POSITION_ROPE
        self._mrope_pos = (_ll.llama_pos * (_POS_PER_ROW * self.n_batch))() if self.mrope else None
        self.n_past = 0  # KV cells used
        self.next_pos = 0  # the position the next token takes (jumps past an M-RoPE image grid)
        self.max_cell_pos = -1  # the largest temporal (first-section) position in the cache: what llama.cpp masks by
        self.llama_s = 0.0  # seconds spent inside llama_decode since the last reset (mmedge bench's orchestration share)
        self._eog: np.ndarray | None = None  # built on first use: a ctypes call per vocabulary entry
        self.should_stop: Callable[[], bool] | None = None  # see _decode
        # Kept on the object: ctypes frees a callback's trampoline when its Python object dies.
        self._abort_callback = _ll.ggml_abort_callback(self._abort_requested)

    @property
    def n_threads(self) -> int:
        """The threads llama.cpp decodes with (what `n_threads=0` became)."""
        return int(_ll.llama_n_threads(self.ctx))

    # -- tokens ------------------------------------------------------------------------------
    def tokenize(self, text: str, add_special: bool, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        buf = (_ll.llama_token * capacity)()
        n = _ll.llama_tokenize(self.vocab, data, len(data), buf, capacity, add_special, parse_special)
        if n < 0:
            capacity = -n
            buf = (_ll.llama_token * capacity)()
            n = _ll.llama_tokenize(self.vocab, data, len(data), buf, capacity, add_special, parse_special)
        if n < 0:
            raise BackendError(f"llama.cpp failed to tokenize the prompt (code {n})")
        return list(buf[:n])

    def is_special(self, token: int) -> bool:
        """Control or user-defined (added) tokens: the ones prompt parsing splits text at."""
        attr = int(_ll.llama_vocab_get_attr(self.vocab, token))
        return bool(attr & (_ATTR_CONTROL | _ATTR_USER_DEFINED))

    def token_bytes(self, token: int, special: bool = False) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = _ll.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = _ll.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        return buf.raw[: max(n, 0)]

    @property
    def eog_tokens(self) -> np.ndarray:
        """Every end-of-generation token id (llama.cpp's set: EOS, EOT, and the like)."""
        if self._eog is None:
            self._eog = np.array([t for t in range(self.n_vocab) if _ll.llama_vocab_is_eog(self.vocab, t)], dtype=np.int64)
        return self._eog

    def is_eog(self, token: int) -> bool:
        return bool(_ll.llama_vocab_is_eog(self.vocab, token))

    # -- the KV cache --------------------------------------------------------------------------
    def reset(self, first_position: int = 0) -> None:
        """Empty the sequence; the next position is `first_position` (PaliGemma counts from 1)."""
        _ll.llama_memory_clear(_ll.llama_get_memory(self.ctx), True)
        self.n_past = 0
        self.next_pos = first_position
        self.max_cell_pos = first_position - 1
        self.llama_s = 0.0

    def _check_room(self, n: int) -> None:
        if self.n_past + n > self.n_ctx:
            raise PromptError(
                f"the sequence needs {self.n_past + n} positions but the context holds {self.n_ctx}; "
                "shorten the prompt, use fewer images, lower --max-tokens or raise --ctx"
            )

    def decode_tokens(self, tokens: list[int], logits_for: str = "last") -> np.ndarray | None:
        """Append tokens to the sequence. Returns logits [n, vocab] ('all'), [vocab] ('last') or None."""
        self._check_room(len(tokens))
        for tok in tokens:
            if not 0 <= tok < self.n_vocab:
                raise PromptError(f"token id {tok} is outside the vocabulary (0..{self.n_vocab - 1})")
        positions = self.next_pos + np.arange(len(tokens), dtype=np.int64)
        rows, last = [], None
        for lo, hi, causal in self._runs(positions[None]):
            for start in range(lo, hi, self.n_batch):
                end = min(start + self.n_batch, hi)
                b = self._token_batch
                for i in range(end - start):
                    b.token[i] = tokens[start + i]
                    b.pos[i] = int(positions[start + i])
                    b.n_seq_id[i] = 1
                    b.seq_id[i][0] = 0
                    b.logits[i] = logits_for == "all" or (logits_for == "last" and start + i == len(tokens) - 1)
                b.n_tokens = end - start
                self._decode(b, causal)
                if logits_for == "all":
                    rows.extend(self._logits(i) for i in range(end - start))
                elif logits_for == "last" and end == len(tokens):
                    last = self._logits(end - start - 1)  # index within the last batch decoded
                self.n_past += end - start
        if len(tokens):
            self._taken(positions[None])
        if logits_for == "all":
            return np.stack(rows)
        return last

    def _runs(self, positions: np.ndarray) -> list[tuple[int, int, bool]]:
        """Causal batches and lone rows, so that llama.cpp's position-based mask is the sequence
        order (only M-RoPE positions can step back: `mrope_mask`)."""
        if not self.mrope:
            return [(0, positions.shape[1], True)]
        return causal_runs(positions, self.max_cell_pos)

    def _taken(self, positions: np.ndarray) -> None:
        """Rows at `positions` went into the cache: the next token comes after the largest."""
        self.max_cell_pos = max(self.max_cell_pos, int(positions[0].max()))
        self.next_pos = int(positions.max()) + 1

    def decode_embeddings(self, embeddings: np.ndarray, want_last_logits: bool = False,
                          grid: np.ndarray | None = None, bidirectional: bool = False) -> np.ndarray | None:
        """Append rows of input embeddings [n, n_embd] (image tokens) to the sequence.

        `grid`: int offsets [3, n] (temporal, height, width) from the run's start position, for
        M-RoPE models; the next token then comes after the largest of them. Without it (or for a
        model with one position per token) the rows take consecutive positions.

        `bidirectional`: the rows attend to each other both ways (and to everything before them).
        llama.cpp turns causal masking off per decode, not per row, so the rows must go in one
        ubatch; the context keeps n_ubatch = n_batch, hence the limit below.
        """
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.n_embd:
            raise BackendError(
                f"image embeddings have shape {embeddings.shape}, the LLM takes rows of width {self.n_embd}; "
                "the projector and the GGUF do not belong together"
            )
        n = embeddings.shape[0]
        self._check_room(n)
        if grid is not None and (grid.shape != (3, n) or grid.min() < 0):
            raise BackendError(f"image positions have shape {grid.shape}, expected non-negative offsets of shape (3, {n})")
        # One row of consecutive positions, or (M-RoPE with a grid) temporal/height/width rows.
        offsets = grid if self.mrope and grid is not None else np.arange(n, dtype=np.int64)[None]
        positions = self.next_pos + np.asarray(offsets, dtype=np.int64)
        logits = self._decode_embeddings_at(embeddings, positions, want_last_logits, bidirectional)
        self._taken(positions)
        return logits

    def _decode_embeddings_at(self, embeddings: np.ndarray, positions: np.ndarray, want_last_logits: bool,
                              bidirectional: bool) -> np.ndarray | None:
        n = embeddings.shape[0]
        if bidirectional:
            if n > self.n_batch:
                raise PromptError(
                    f"a run of {n} positions must be decoded bidirectionally in one batch, but the batch holds {self.n_batch}; "
                    f"raise the batch size (`mmedge run --batch`, RuntimeOptions.n_batch) to at least {n}"
                )
            return self._decode_embedding_rows(embeddings, positions, want_last_logits, causal=False)
        last = None
        for lo, hi, causal in self._runs(positions):
            logits = self._decode_embedding_rows(embeddings[lo:hi], positions[:, lo:hi], want_last_logits and hi == n, causal)
            last = logits if hi == n else last
        return last

    def _decode_embedding_rows(self, embeddings: np.ndarray, positions: np.ndarray, want_last_logits: bool,
                               causal: bool = True) -> np.ndarray | None:
        n = embeddings.shape[0]
        last = None
        for start in range(0, n, self.n_batch):
            chunk = embeddings[start : start + self.n_batch]
            b = self._embd_batch
            ctypes.memmove(b.embd, chunk.ctypes.data, chunk.nbytes)
            m = len(chunk)
            for i in range(m):
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = 0
                b.logits[i] = want_last_logits and start + i == n - 1
            b.n_tokens = m
            if self.mrope:
                sections = np.zeros((_POS_PER_ROW, m), dtype=np.int32)  # section-major, the 4th stays 0
                sections[:3] = positions[:, start : start + m]  # a single row broadcasts to the sections
                ctypes.memmove(self._mrope_pos, sections.ctypes.data, sections.nbytes)
                # The address, not the pointer object: a ctypes pointer field read shares the
                # struct's memory, so it would follow the reassignment.
                pos_type, own_pos = type(b.pos), ctypes.cast(b.pos, ctypes.c_void_p).value
                b.pos = ctypes.cast(self._mrope_pos, pos_type)
                try:
                    self._decode(b, causal)
                finally:
                    b.pos = ctypes.cast(own_pos, pos_type)  # llama_batch_free frees the batch's own array
            else:
                for i in range(m):
                    b.pos[i] = int(positions[0, start + i])
                self._decode(b, causal)
            if want_last_logits and start + m == n:
                last = self._logits(m - 1)
            self.n_past += m
        return last

    def _decode(self, batch, causal: bool = True) -> None:
        """One llama_decode; `causal=False`: the batch's rows attend both ways (and to every cell).
        `should_stop`, when set, is asked first, and during a batch of more than one row also by
        llama.cpp after each graph node (its abort callback): a prefill batch, or an image run that
        must be one batch (Gemma 3's bidirectional runs), stops within milliseconds. Single-token
        decode steps are not watched (a Python call per graph node would cost a few percent there,
        and the pipeline asks between steps anyway). An aborted batch leaves some rows in the KV
        cache: `reset` (every generation starts with it) clears them."""
        if self.should_stop is not None and self.should_stop():
            raise DecodeStopped()
        if not causal:
            _ll.llama_set_causal_attn(self.ctx, False)
            try:
                self._decode(batch)
            finally:
                _ll.llama_set_causal_attn(self.ctx, True)
            return
        watched = self.should_stop is not None and batch.n_tokens > 1
        if watched:
            _ll.llama_set_abort_callback(self.ctx, self._abort_callback, None)
        t0 = time.perf_counter()
        try:
            rc = _ll.llama_decode(self.ctx, batch)
        finally:
            self.llama_s += time.perf_counter() - t0
            if watched:
                _ll.llama_set_abort_callback(self.ctx, _NO_ABORT_CALLBACK, None)
        if rc == _LLAMA_DECODE_ABORTED and watched:
            raise DecodeStopped()
        if rc != 0:
            raise BackendError(f"llama_decode failed with code {rc} at position {self.n_past}")

    def _abort_requested(self, _data) -> bool:
        """llama.cpp's abort callback (called on the decoding thread, between graph nodes)."""
        stop = self.should_stop
        try:
            return bool(stop is not None and stop())
        except Exception:  # an exception cannot cross the C frame; the check before the next batch re-raises it
            return False

    def _logits(self, i: int) -> np.ndarray:
        ptr = _ll.llama_get_logits_ith(self.ctx, i)
        if not ptr:
            raise BackendError(f"llama.cpp returned no logits for batch row {i}")
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    # -- lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        if getattr(self, "ctx", None):
            _ll.llama_batch_free(self._token_batch)
            _ll.llama_batch_free(self._embd_batch)
            _ll.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "model", None):
            _ll.llama_model_free(self.model)
            self.model = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
