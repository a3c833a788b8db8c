"""Our GGUF writer for the text backbone, on gguf-py: metadata, tokenizer, tensors (F32/F16).

Quantized types are made from this F32 file by llama.cpp itself (`quantize.py`).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mmedge.errors import UnsupportedConfigError
from mmedge.progress import SILENT, Progress

from .backbone import GLOBAL_TENSORS, IGNORED_TENSORS, TextBackbone, check_text_config
from .inspect import tensor_type_counts
from .vocab import convert_vocab

WRITER_TYPES = ("F32", "F16")


def _rope_parameters(config) -> dict:
    """transformers 5 keeps rope settings in `rope_parameters`; older configs in rope_theta/rope_scaling."""
    params = dict(getattr(config, "rope_parameters", None) or {})
    if "rope_theta" not in params:
        params["rope_theta"] = getattr(config, "rope_theta", 10000.0)
    scaling = getattr(config, "rope_scaling", None)
    if scaling and "rope_type" not in params:
        params.update(scaling)
    params.setdefault("rope_type", params.get("type", "default"))
    return params


def mrope_sections(rope: dict, head_dim: int) -> list[int]:
    """HF's `mrope_section` (frequencies per temporal/height/width part) as llama.cpp's four
    sections (the fourth, unused by Qwen2-VL, is 0). HF's own default applies when absent."""
    sections = [int(v) for v in rope.get("mrope_section", [16, 24, 24])]
    if len(sections) != 3 or sum(sections) != head_dim // 2:
        raise UnsupportedConfigError(
            f"mrope_section {sections}: expected 3 sections summing to head_dim/2 = {head_dim // 2}")
    return sections + [0]


def llama3_rope_factors(theta: float, head_dim: int, rope: dict) -> np.ndarray:
    """Per-frequency divisors of Llama 3.1's rope scaling, as llama.cpp's `rope_freqs` tensor."""
    factor = float(rope["factor"])
    low, high = float(rope.get("low_freq_factor", 1.0)), float(rope.get("high_freq_factor", 4.0))
    old_ctx = float(rope.get("original_max_position_embeddings", 8192))
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    out = []
    for i in range(0, head_dim, 2):
        wavelen = 2 * math.pi * theta ** (i / head_dim)
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


def _permute_rotary(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF stores q/k rows as [first halves | second halves] per head; llama.cpp's llama wants them interleaved."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _gguf_name(hf_name: str, n_layers: int, layer_tensors: dict) -> str | None:
    import gguf

    if hf_name in GLOBAL_TENSORS:
        return gguf.TENSOR_NAMES[gguf.MODEL_TENSOR[GLOBAL_TENSORS[hf_name]]]
    parts = hf_name.split(".")
    if len(parts) > 3 and parts[0] == "model" and parts[1] == "layers" and parts[2].isdigit():
        bid = int(parts[2])
        suffix = ".".join(parts[3:])
        if suffix in layer_tensors and bid < n_layers:
            return gguf.TENSOR_NAMES[gguf.MODEL_TENSOR[layer_tensors[suffix]]].format(bid=bid)
    return None


def write_gguf(backbone: TextBackbone, path: Path, out_type: str = "F32", progress: Progress = SILENT) -> dict:
    import gguf

    if out_type not in WRITER_TYPES:
        raise UnsupportedConfigError(f"the GGUF writer emits {WRITER_TYPES}; {out_type} comes from llama_model_quantize")
    spec = check_text_config(backbone.config)
    c = backbone.config
    n_layers, n_head = c.num_hidden_layers, c.num_attention_heads
    n_head_kv = getattr(c, "num_key_value_heads", None) or n_head
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // n_head
    embed = backbone.tensors["model.embed_tokens.weight"]
    n_vocab = int(embed.shape[0])

    w = gguf.GGUFWriter(str(path), spec.gguf_arch)
    w.add_name(backbone.name)
    w.add_context_length(int(c.max_position_embeddings))
    w.add_embedding_length(int(c.hidden_size))
    w.add_block_count(int(n_layers))
    w.add_feed_forward_length(int(c.intermediate_size))
    w.add_head_count(int(n_head))
    w.add_head_count_kv(int(n_head_kv))
    w.add_layer_norm_rms_eps(float(c.rms_norm_eps))
    arch_rope = spec.metadata(w, c) if spec.metadata else None
    rope = _rope_parameters(c) if arch_rope is None else {"rope_theta": 10000.0, "rope_type": "default", **arch_rope}
    w.add_rope_freq_base(float(rope["rope_theta"]))
    w.add_rope_dimension_count(int(head_dim))
    if head_dim * n_head != c.hidden_size:
        w.add_key_length(int(head_dim))
        w.add_value_length(int(head_dim))
    w.add_vocab_size(n_vocab)
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if out_type == "F32" else gguf.LlamaFileType.MOSTLY_F16)

    rope_type = rope["rope_type"]
    extra_tensors: dict[str, np.ndarray] = {}
    if rope_type == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(rope["factor"]))
    elif rope_type == "llama3" and spec.gguf_arch == "llama":
        extra_tensors[gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight"] = llama3_rope_factors(rope["rope_theta"], head_dim, rope)
    elif rope_type != "default":
        raise UnsupportedConfigError(f"rope type {rope_type!r} is not converted; supported: default, linear, llama3 (llama)")
    if spec.mrope:
        w.add_rope_dimension_sections(mrope_sections(rope, head_dim))

    _write_vocab(w, backbone, n_vocab)

    names = {}
    for hf_name in backbone.tensors:
        if hf_name.endswith(IGNORED_TENSORS):
            continue
        gname = _gguf_name(hf_name, n_layers, spec.layer_tensors)
        if gname is None:
            raise UnsupportedConfigError(f"tensor {hf_name!r} has no GGUF mapping for {backbone.model_type}; refusing to drop it")
        if hf_name.endswith("_proj.bias") and not spec.has_qkv_bias:
            raise UnsupportedConfigError(f"{hf_name}: attention biases are not supported by llama.cpp's {spec.gguf_arch} arch")
        names[hf_name] = gname + (".bias" if hf_name.endswith(".bias") else ".weight")
    if not backbone.tie_word_embeddings and not spec.untied_output:
        raise UnsupportedConfigError(f"untied embeddings: llama.cpp's {spec.gguf_arch} graph always uses token_embd as the output matrix")
    if not backbone.tie_word_embeddings and "lm_head.weight" not in backbone.tensors:
        raise UnsupportedConfigError("untied embeddings but no lm_head.weight in the checkpoint")

    for hf_name, gname in names.items():
        data = backbone.tensors[hf_name].detach().to("cpu").float().numpy()
        if spec.permute_qk and hf_name.endswith("self_attn.q_proj.weight"):
            data = _permute_rotary(data, n_head)
        elif spec.permute_qk and hf_name.endswith("self_attn.k_proj.weight"):
            data = _permute_rotary(data, n_head_kv)
        if spec.norm_plus_one and hf_name.endswith("norm.weight"):
            data = data + np.float32(1.0)  # as HF computes (1 + weight) in float32
        # Norms and biases stay F32 in an F16 file, as llama.cpp's own converter does.
        if out_type == "F16" and data.ndim == 2:
            data = data.astype(np.float16)
        w.add_tensor(gname, np.ascontiguousarray(data))
    for gname, data in extra_tensors.items():
        w.add_tensor(gname, data)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=progress.enabled)
    w.close()
    counts = tensor_type_counts(path)
    return {"gguf_arch": spec.gguf_arch, "tensor_types": counts, "n_tensors": sum(counts.values()), "n_vocab": n_vocab,
            "tied_embeddings": backbone.tie_word_embeddings, **({"deviations": list(spec.deviations)} if spec.deviations else {})}


def _write_vocab(w, backbone: TextBackbone, n_vocab: int) -> None:
    tok = backbone.tokenizer
    vocab = convert_vocab(tok, backbone.tokenizer_dir, n_vocab)
    w.add_tokenizer_model(vocab.model)
    w.add_tokenizer_pre(vocab.pre)
    w.add_token_list(vocab.tokens)
    w.add_token_types(vocab.types)
    if vocab.scores is not None:
        w.add_token_scores(vocab.scores)
    if vocab.merges:
        w.add_token_merges(vocab.merges)
    if vocab.add_space_prefix is not None:
        w.add_add_space_prefix(vocab.add_space_prefix)
    for setter, tid in (
        (w.add_bos_token_id, tok.bos_token_id),
        (w.add_eos_token_id, tok.eos_token_id),
        (w.add_pad_token_id, tok.pad_token_id),
        (w.add_unk_token_id, tok.unk_token_id),
    ):
        if tid is not None:
            setter(int(tid))
    probe = tok("a").input_ids
    w.add_add_bos_token(bool(tok.bos_token_id is not None and probe and probe[0] == tok.bos_token_id))
    w.add_add_eos_token(bool(tok.eos_token_id is not None and probe and probe[-1] == tok.eos_token_id))
    if backbone.chat_template:
        w.add_chat_template(backbone.chat_template)
