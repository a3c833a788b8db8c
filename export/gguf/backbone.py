"""The text backbone handed from a family to the GGUF writer, and per-architecture data tables."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class TextBackbone:
    """An LLM backbone in HF `*ForCausalLM` naming ("model.layers.0.self_attn.q_proj.weight", ...)."""

    model_type: str  # HF text_config.model_type
    config: Any  # the HF text config
    tensors: dict  # name -> torch.Tensor
    tie_word_embeddings: bool
    tokenizer: Any  # the HF tokenizer
    tokenizer_dir: str | None  # folder with tokenizer.json / tokenizer.model
    chat_template: str | None
    name: str


@dataclass(frozen=True)
class ArchSpec:
    """How one HF text architecture maps onto a llama.cpp architecture."""

    gguf_arch: str
    permute_qk: bool  # llama.cpp's llama arch expects HF's rotary halves interleaved back
    has_qkv_bias: bool
    # Multimodal rotary (Qwen2-VL): rotary frequencies split into sections rotated by the
    # temporal, height and width positions of each token.
    mrope: bool = False


ARCHITECTURES: dict[str, ArchSpec] = {
    "llama": ArchSpec(gguf_arch="llama", permute_qk=True, has_qkv_bias=False),
    "qwen2": ArchSpec(gguf_arch="qwen2", permute_qk=False, has_qkv_bias=True),
    "qwen2_vl_text": ArchSpec(gguf_arch="qwen2vl", permute_qk=False, has_qkv_bias=True, mrope=True),
    "qwen2_5_vl_text": ArchSpec(gguf_arch="qwen2vl", permute_qk=False, has_qkv_bias=True, mrope=True),
}

# HF per-layer suffix -> gguf MODEL_TENSOR member name (looked up in gguf.MODEL_TENSOR).
LAYER_TENSORS: dict[str, str] = {
    "input_layernorm.weight": "ATTN_NORM",
    "self_attn.q_proj.weight": "ATTN_Q",
    "self_attn.k_proj.weight": "ATTN_K",
    "self_attn.v_proj.weight": "ATTN_V",
    "self_attn.o_proj.weight": "ATTN_OUT",
    "self_attn.q_proj.bias": "ATTN_Q",
    "self_attn.k_proj.bias": "ATTN_K",
    "self_attn.v_proj.bias": "ATTN_V",
    "post_attention_layernorm.weight": "FFN_NORM",
    "mlp.gate_proj.weight": "FFN_GATE",
    "mlp.up_proj.weight": "FFN_UP",
    "mlp.down_proj.weight": "FFN_DOWN",
}
GLOBAL_TENSORS: dict[str, str] = {
    "model.embed_tokens.weight": "TOKEN_EMBD",
    "model.norm.weight": "OUTPUT_NORM",
    "lm_head.weight": "OUTPUT",
}
# Buffers that HF keeps in the state dict but that llama.cpp computes itself.
IGNORED_TENSORS = ("rotary_emb.inv_freq",)
