"""The text backbone handed from a family to the GGUF writer, and per-architecture data tables."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


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
# Gemma 2 / 3 norm around both blocks: HF's post_attention_layernorm is applied to the attention
# output (llama.cpp's attn_post_norm), the FFN's input norm is pre_feedforward_layernorm.
GEMMA2_LAYER_TENSORS: dict[str, str] = {
    **{k: v for k, v in LAYER_TENSORS.items() if not k.endswith("_proj.bias")},
    "post_attention_layernorm.weight": "ATTN_POST_NORM",
    "pre_feedforward_layernorm.weight": "FFN_NORM",
    "post_feedforward_layernorm.weight": "FFN_POST_NORM",
}
GEMMA3_LAYER_TENSORS: dict[str, str] = {
    **GEMMA2_LAYER_TENSORS,
    "self_attn.q_norm.weight": "ATTN_Q_NORM",
    "self_attn.k_norm.weight": "ATTN_K_NORM",
}
GLOBAL_TENSORS: dict[str, str] = {
    "model.embed_tokens.weight": "TOKEN_EMBD",
    "model.norm.weight": "OUTPUT_NORM",
    "lm_head.weight": "OUTPUT",
}
# Buffers that HF keeps in the state dict but that llama.cpp computes itself.
IGNORED_TENSORS = ("rotary_emb.inv_freq",)


@dataclass(frozen=True)
class ArchSpec:
    """How one HF text architecture maps onto a llama.cpp architecture."""

    gguf_arch: str
    permute_qk: bool  # llama.cpp's llama arch expects HF's rotary halves interleaved back
    has_qkv_bias: bool
    layer_tensors: dict = field(default_factory=lambda: LAYER_TENSORS)
    # Gemma's RMSNorm multiplies by (1 + weight); llama.cpp's by weight, so its converter stores weight + 1.
    norm_plus_one: bool = False
    # llama.cpp's gemma/gemma2 graphs always take the output matrix from token_embd.
    untied_output: bool = True
    # Architecture-specific metadata (sliding window, softcaps, ...): writer, config -> the rope
    # parameters of the global layers, or None for the config's own (export/gguf/gemma.py).
    metadata: Callable[[Any, Any], dict | None] | None = None
    # Multimodal rotary (Qwen2-VL): rotary frequencies split into sections rotated by the
    # temporal, height and width positions of each token.
    mrope: bool = False
    # The FFN activation llama.cpp's graph computes (HF names); a config asking for another is refused.
    activation: str = "silu"
    # What the pinned llama.cpp's graph does differently from HF whatever the GGUF says, recorded in
    # the manifest beside the part and named when verification refuses the part.
    deviations: tuple[str, ...] = ()


def _architectures() -> dict[str, ArchSpec]:
    from .gemma import gemma2_metadata, gemma3_metadata, gemma_metadata

    return {
        "llama": ArchSpec(gguf_arch="llama", permute_qk=True, has_qkv_bias=False),
        "qwen2": ArchSpec(gguf_arch="qwen2", permute_qk=False, has_qkv_bias=True),
        "qwen2_vl_text": ArchSpec(gguf_arch="qwen2vl", permute_qk=False, has_qkv_bias=True, mrope=True,
                                  deviations=(QWEN2VL_RMS_EPS,)),
        "qwen2_5_vl_text": ArchSpec(gguf_arch="qwen2vl", permute_qk=False, has_qkv_bias=True, mrope=True,
                                    deviations=(QWEN2VL_RMS_EPS,)),
        "gemma": ArchSpec(gguf_arch="gemma", permute_qk=False, has_qkv_bias=False, norm_plus_one=True,
                          untied_output=False, metadata=gemma_metadata, activation="gelu_pytorch_tanh"),
        "gemma2": ArchSpec(gguf_arch="gemma2", permute_qk=False, has_qkv_bias=False, norm_plus_one=True,
                           untied_output=False, layer_tensors=GEMMA2_LAYER_TENSORS, metadata=gemma2_metadata,
                           activation="gelu_pytorch_tanh"),
        "gemma3_text": ArchSpec(gguf_arch="gemma3", permute_qk=False, has_qkv_bias=False, norm_plus_one=True,
                                layer_tensors=GEMMA3_LAYER_TENSORS, metadata=gemma3_metadata,
                                activation="gelu_pytorch_tanh"),
    }


# Measured: llama.cpp 0.3.36's qwen2vl graph never reads `layer_norm_rms_epsilon` (its hparams loader
# takes the rope sections only), so its RMS norms run with epsilon 0. Negligible where hidden states
# are large (trained models, eps 1e-6); a model with small activations (transformers' std-0.02
# init, eps 1e-5) moved its logits by 1.7% of their scale, which the F32 tolerance refuses.
QWEN2VL_RMS_EPS = ("llama.cpp's qwen2vl graph computes its RMS norms with epsilon 0 (it does not read the GGUF's "
                   "layer_norm_rms_epsilon); the checkpoint's epsilon only shows in the measured logits")


ARCHITECTURES: dict[str, ArchSpec] = _architectures()


def activation_of(config) -> str | None:
    """The FFN activation a text config asks for (Gemma's `hidden_activation` overrides `hidden_act`)."""
    return getattr(config, "hidden_activation", None) or getattr(config, "hidden_act", None)


def check_text_config(config) -> ArchSpec:
    """Refuse, by name, a text backbone whose math llama.cpp's graph cannot compute; reads the config
    only (the exporter calls it before any weight is loaded, the writer again)."""
    from mmedge.errors import UnsupportedConfigError

    spec = ARCHITECTURES.get(config.model_type)
    if spec is None:
        raise UnsupportedConfigError(f"text backbone {config.model_type!r} has no GGUF mapping; supported: "
                                     f"{sorted(ARCHITECTURES)}")
    act = activation_of(config)
    if act != spec.activation:
        raise UnsupportedConfigError(
            f"text_config.hidden_act {act!r}: llama.cpp's {spec.gguf_arch} graph computes its FFN with "
            f"{spec.activation!r} and reads no activation from the GGUF, so this checkpoint cannot be reproduced")
    return spec

# How close llama.cpp's F32 graph of each architecture comes to PyTorch in exact mode (F32 KV cache,
# no flash attention): the largest |logit difference| over all positions, as a share of the largest
# |logit|. An F32 GGUF is judged by it, not by a top-1 share, which a near tie flips and a lost
# hyper-parameter can keep high. SiLU graphs differ by summation order only (measured <= 3e-6 on the
# tiny models); Gemma's GELU goes through ggml's float16 lookup table (measured <= 6.3e-4).
F32_LOGIT_TOLERANCE: dict[str, float] = {
    "llama": 2e-5, "qwen2": 2e-5, "qwen2vl": 2e-5,
    "gemma": 2e-3, "gemma2": 2e-3, "gemma3": 2e-3,
}
