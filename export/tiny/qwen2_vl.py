"""A seeded tiny Qwen2-VL checkpoint: ViT over 8-px patches (Conv3d, temporal 2), 2-D vision rotary,
2x2 PatchMerger, a Qwen2 backbone with M-RoPE (sections [2, 3, 3] of head_dim 16).

min/max pixels are small (16x16x4 .. 64x64x4) so that images of different odd sizes get different
patch grids (and token counts) while the model stays tiny; a 16-px resize factor (patch 8 x merge 2).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .tokenizers import TOKENIZER_BUILDERS
from .templates import chatml_template
from .weights import scaled_random_init

# ChatML with Qwen2-VL's vision tags around each image, images before the text.
QWEN2VL_TEMPLATE = chatml_template("<|vision_start|><|image_pad|><|vision_end|>")


@dataclass(frozen=True)
class TinyQwen2VLPreset:
    name: str
    description: str
    patch_size: int = 8
    merge_size: int = 2
    temporal_patch_size: int = 2
    min_pixels: int = 16 * 16 * 4
    max_pixels: int = 64 * 64 * 4
    weight_scale: float = 1.5


PRESETS = {
    p.name: p
    for p in (
        TinyQwen2VLPreset("qwen2vl-tiny", "Qwen2-VL: ViT (8-px patches, temporal 2) + 2x2 PatchMerger, Qwen2 with "
                          "M-RoPE; 256..16384 pixels per image"),
    )
}


def build_tiny_qwen2_vl(out_dir: str | Path, preset: str, seed: int = 0) -> Path:
    import torch
    import transformers as tf

    p = PRESETS[preset]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = TOKENIZER_BUILDERS["qwen2vl-bpe"]()
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in
           (("image_token_id", "<|image_pad|>"), ("vision_start_token_id", "<|vision_start|>"),
            ("vision_end_token_id", "<|vision_end|>"))}
    text = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-6, bos_token_id=None,
                tie_word_embeddings=False, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]})
    vision = dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=p.patch_size,
                  spatial_merge_size=p.merge_size, temporal_patch_size=p.temporal_patch_size)
    config = tf.Qwen2VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)
    torch.manual_seed(seed)
    model = tf.Qwen2VLForConditionalGeneration(config).eval()
    scaled_random_init(model, seed, p.weight_scale)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    image_processor = tf.Qwen2VLImageProcessorPil(min_pixels=p.min_pixels, max_pixels=p.max_pixels,
                                                  patch_size=p.patch_size, merge_size=p.merge_size,
                                                  temporal_patch_size=p.temporal_patch_size)
    # Qwen2VLProcessor wants a torchvision video processor, which mmedge's environment lacks: the
    # folder is written as a Qwen2-VL checkpoint lays it out, file by file.
    image_processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "chat_template.jinja").write_text(QWEN2VL_TEMPLATE)
    return out
