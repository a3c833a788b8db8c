"""GGUF metadata of the Gemma text backbones (Gemma 1, 2, 3) and what llama.cpp cannot reproduce.

Facts from llama.cpp's gemma/gemma2/gemma3 graphs that decide what we write or refuse:
- the attention scale is not read from the file: 1/sqrt(head_dim) (1/sqrt(n_embd/n_head) for the
  27B layer counts), so HF's `query_pre_attn_scalar` must equal that;
- the FFN is GELU (tanh approximation: `ArchSpec.activation`, checked with every architecture's in
  backbone.py); Gemma 2 always applies both soft-caps; Gemma 3 has no
  attention soft-cap and applies the final one only when the key is present;
- the sliding-window layers are given per layer (a bool array), their rope base by its own key, and
  their rope is never scaled.
Each function writes its keys and returns the rope parameters of the global layers (or None:
the config's own).
"""
from __future__ import annotations

from mmedge.errors import UnsupportedConfigError

# n_layer values llama.cpp treats as the 27B models (attention scale from n_embd / n_head).
_SCALE_BY_EMBD_LAYERS = {"gemma2": 46, "gemma3_text": 62}


def _check_attention_scale(c) -> None:
    head_dim = c.head_dim
    if c.num_hidden_layers == _SCALE_BY_EMBD_LAYERS.get(c.model_type):
        head_dim = c.hidden_size // c.num_attention_heads
    if float(c.query_pre_attn_scalar) != float(head_dim):
        raise UnsupportedConfigError(
            f"query_pre_attn_scalar {c.query_pre_attn_scalar}: llama.cpp scales attention by 1/sqrt({head_dim}) for this "
            "shape and reads no override from the GGUF, so this checkpoint cannot be reproduced"
        )


def _write_sliding_window(w, c) -> None:
    layer_types = list(getattr(c, "layer_types", None) or [])
    if len(layer_types) != c.num_hidden_layers or not set(layer_types) <= {"sliding_attention", "full_attention"}:
        raise UnsupportedConfigError(f"layer_types {layer_types}: expected one of sliding_attention/full_attention per layer")
    if not c.sliding_window:
        raise UnsupportedConfigError("a Gemma config with sliding layers but no sliding_window")
    w.add_sliding_window(int(c.sliding_window))
    w.add_sliding_window_pattern([t == "sliding_attention" for t in layer_types])


def gemma_metadata(w, c) -> dict | None:
    return None


def gemma2_metadata(w, c) -> dict | None:
    _check_attention_scale(c)
    if not c.attn_logit_softcapping or not c.final_logit_softcapping:
        raise UnsupportedConfigError("Gemma 2 without attention/final logit soft-capping: llama.cpp's gemma2 graph always applies both")
    _write_sliding_window(w, c)
    w.add_attn_logit_softcapping(float(c.attn_logit_softcapping))
    w.add_final_logit_softcapping(float(c.final_logit_softcapping))
    return None


def gemma3_metadata(w, c) -> dict | None:
    _check_attention_scale(c)
    if c.attn_logit_softcapping:
        raise UnsupportedConfigError("Gemma 3 with attention soft-capping: llama.cpp's gemma3 graph has none")
    if getattr(c, "use_bidirectional_attention", False):
        raise UnsupportedConfigError("Gemma 3 with use_bidirectional_attention (an embedding model) is not a generator")
    if c.final_logit_softcapping:
        w.add_final_logit_softcapping(float(c.final_logit_softcapping))
    _write_sliding_window(w, c)
    rope = dict(c.rope_parameters)
    local, full = rope.get("sliding_attention", {}), rope.get("full_attention", {})
    if local.get("rope_type", "default") != "default":
        raise UnsupportedConfigError(f"rope type {local.get('rope_type')!r} on sliding layers: llama.cpp never scales their rope")
    w.add_rope_freq_base_swa(float(local["rope_theta"]))
    return dict(full)
