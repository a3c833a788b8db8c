"""GGUF quantization by llama.cpp's own `llama_model_quantize`, then a read-back of the real types.

K-quants need rows that are multiples of 256; llama.cpp silently writes other types for the
tensors that are not. The manifest records the types the file really holds and a note when
they differ from the name asked for.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

from mmedge.errors import ExportError, RecipeError

from .inspect import count_types, tensor_types

# --llm name -> llama_ftype constant name in llama.h, and the ggml types the name promises.
FTYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "Q8_0": ("LLAMA_FTYPE_MOSTLY_Q8_0", ("Q8_0",)),
    "Q4_0": ("LLAMA_FTYPE_MOSTLY_Q4_0", ("Q4_0",)),
    "Q4_K_M": ("LLAMA_FTYPE_MOSTLY_Q4_K_M", ("Q4_K", "Q6_K")),
}


# ggml type ids (ggml.h) that a caller may pin token_embd to.
GGML_TYPES = {"F32": 0, "F16": 1, "Q8_0": 8}


def quantize_gguf(src: Path, dst: Path, name: str, threads: int = 0, token_embedding_type: str | None = None) -> dict:
    """token_embedding_type: keep token_embd in this type (the runtime reads its rows itself for
    prefix-LM prompts and dequantizes only F32/F16/Q8_0 exactly)."""
    if name not in FTYPES:
        raise RecipeError(f"llama_model_quantize type {name!r} is not wired; choose one of {list(FTYPES)}")
    import llama_cpp

    from mmedge.runtime.llamacpp import _init_backend

    _init_backend()
    ftype_name, promised = FTYPES[name]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, ftype_name)
    params.nthread = threads
    if token_embedding_type is not None:
        params.token_embedding_type = GGML_TYPES[token_embedding_type]
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0 or not Path(dst).is_file():
        raise ExportError(f"llama_model_quantize to {name} failed (code {rc})")
    types = tensor_types(dst)
    # 2-D weights that did not get a promised type: llama.cpp's fallbacks (or its deliberate choices).
    other = sorted({t for n, t in types.items() if n.endswith(".weight") and t not in promised and t not in ("F32",)})
    info = {"tensor_types": count_types(types), "n_tensors": len(types), "quantized_by": "llama_model_quantize",
            "requested": name, **({"token_embedding_type": token_embedding_type} if token_embedding_type else {})}
    if other:
        info["fallback_note"] = (
            f"{name}: some tensors hold {other} instead of {list(promised)} "
            "(K-quants need rows that are multiples of 256; llama.cpp chose other types for those)"
        )
    return info
