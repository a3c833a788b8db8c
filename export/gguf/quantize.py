"""GGUF quantization by llama.cpp's own `llama_model_quantize`, then a read-back of the real types.

Each `--llm` type is a mix llama.cpp writes on purpose (Q4_0 keeps the output matrix in Q6_K, Q4_K_M
puts some attention-value and FFN-down matrices in Q6_K). A tensor whose rows are not a multiple of
its type's block (32 for Q8_0/Q4_0, 256 for the K-quants) cannot take that type, and llama.cpp
silently writes another one instead (F16, Q5_0, Q8_0, ...). So a type is what was asked or refused:
`fallbacks_for` names the dimensions that would force a fallback before any weight is read, the
read-back after quantizing is the authority, and only `--allow-quant-fallback` keeps such a file,
with every fallen-back tensor listed in the manifest.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

from mmedge.errors import ExportError, RecipeError

from .inspect import count_types, tensor_infos

# ggml types' block sizes: a row (a weight's input dimension) must be a multiple.
BLOCK = {"Q8_0": 32, "Q4_0": 32, "Q5_0": 32, "Q4_K": 256, "Q5_K": 256, "Q6_K": 256}


@dataclass(frozen=True)
class QuantType:
    ftype: str  # the llama_ftype constant in llama.h
    base: str  # the type of every 2-D weight not named in `special`
    special: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (tensor, types llama.cpp may choose), blk.N. left out

    def intended(self, tensor: str) -> tuple[str, ...]:
        role = tensor.split(".", 2)[2] if tensor.startswith("blk.") else tensor  # "blk.3.attn_v.weight" -> "attn_v.weight"
        return next((types for name, types in self.special if role == name), (self.base,))

    def types(self) -> set[str]:
        return {self.base, *(t for _, types in self.special for t in types)}


QUANT_TYPES: dict[str, QuantType] = {
    "Q8_0": QuantType("LLAMA_FTYPE_MOSTLY_Q8_0", "Q8_0"),
    "Q4_0": QuantType("LLAMA_FTYPE_MOSTLY_Q4_0", "Q4_0", special=(("output.weight", ("Q6_K",)),)),
    "Q4_K_M": QuantType("LLAMA_FTYPE_MOSTLY_Q4_K_M", "Q4_K",
                        special=(("attn_v.weight", ("Q4_K", "Q6_K")), ("ffn_down.weight", ("Q4_K", "Q6_K")),
                                 ("output.weight", ("Q6_K",)))),
}

# ggml type ids (ggml.h) that a caller may pin token_embd to.
GGML_TYPES = {"F32": 0, "F16": 1, "Q8_0": 8}


def fallbacks_for(name: str, rows: dict[str, int], pinned_token_embd: bool = False) -> list[str]:
    """Why `name` cannot be written as asked for a backbone whose weights have these input
    dimensions ({"hidden_size": .., "intermediate_size": .., "attention output": ..}): one phrase
    per (dimension, type) that does not divide. Reads the config only."""
    q = QUANT_TYPES[name]
    by_tensor = {"token_embd.weight": "hidden_size", "attn_q.weight": "hidden_size", "attn_k.weight": "hidden_size",
                 "attn_v.weight": "hidden_size", "attn_output.weight": "attention output",
                 "ffn_gate.weight": "hidden_size", "ffn_up.weight": "hidden_size",
                 "ffn_down.weight": "intermediate_size", "output.weight": "hidden_size"}
    problems = []
    for tensor, dim in by_tensor.items():
        if tensor == "token_embd.weight" and pinned_token_embd:
            continue
        for t in q.intended(tensor):
            if rows[dim] % BLOCK[t]:
                problems.append(f"{dim} {rows[dim]} is not a multiple of {t}'s block of {BLOCK[t]} ({tensor})")
                break
    return sorted(set(problems))


def quantize_gguf(src: Path, dst: Path, name: str, threads: int = 0, token_embedding_type: str | None = None,
                  allow_fallback: bool = False) -> dict:
    """token_embedding_type: keep token_embd in this type (the runtime reads its rows itself for
    prefix-LM prompts and dequantizes only F32/F16/Q8_0 exactly)."""
    if name not in QUANT_TYPES:
        raise RecipeError(f"llama_model_quantize type {name!r} is not wired; choose one of {list(QUANT_TYPES)}")
    import llama_cpp

    from mmedge.runtime.llamacpp import _init_backend

    _init_backend()
    q = QUANT_TYPES[name]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, q.ftype)
    params.nthread = threads
    if token_embedding_type is not None:
        params.token_embedding_type = GGML_TYPES[token_embedding_type]
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0 or not Path(dst).is_file():
        raise ExportError(f"llama_model_quantize to {name} failed (code {rc})")
    infos = tensor_infos(dst)
    # 2-D weights that did not get the type llama.cpp's mix intends for them: its fallbacks.
    fallen = {n: t for n, (t, dims) in sorted(infos.items())
              if dims >= 2 and t not in q.intended(n) and not (n == "token_embd.weight" and token_embedding_type)}
    info = {"tensor_types": count_types({n: t for n, (t, _) in infos.items()}), "n_tensors": len(infos),
            "quantized_by": "llama_model_quantize", "requested": name,
            **({"token_embedding_type": token_embedding_type} if token_embedding_type else {})}
    if fallen:
        if not allow_fallback:
            Path(dst).unlink()
            raise RecipeError(
                f"--llm {name}: llama.cpp wrote {len(fallen)} tensors in other types ({_examples(fallen)}) because "
                f"their rows are not multiples of the type's block; choose another type, or pass --allow-quant-fallback "
                "to keep them (the manifest lists them)")
        info["fallback_tensors"] = fallen
        info["fallback_note"] = (f"{name}: {len(fallen)} tensors hold other types than {name}'s mix "
                                 f"({_examples(fallen)}): their rows are not multiples of the type's block")
    return info


def _examples(fallen: dict[str, str], n: int = 3) -> str:
    shown = ", ".join(f"{k} as {v}" for k, v in list(fallen.items())[:n])
    return shown + (f", and {len(fallen) - n} more" if len(fallen) > n else "")
