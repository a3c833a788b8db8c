"""Seeded tiny Qwen2-VL and Qwen2.5-VL checkpoints: ViT over 8-px patches (Conv3d, temporal 2), 2-D
vision rotary, 2x2 PatchMerger, a Qwen2 backbone with M-RoPE (sections [2, 3, 3] of head_dim 16).
Qwen2.5-VL's ViT (RMSNorm, SwiGLU) attends within 32-px windows (2x2 merge groups) in block 0 and
over the whole image in block 1.

min/max pixels are small (16x16x4 .. 64x64x4) so that images of different odd sizes get different
patch grids (and token counts) while the model stays tiny; a 16-px resize factor (patch 8 x merge 2).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..video_processors import VIDEO_PROCESSOR_FILE
from .tokenizers import TOKENIZER_BUILDERS
from .templates import chatml_template
from .weights import scaled_random_init, write_json

# ChatML with Qwen2-VL's vision tags around each image and video, images then videos before the text.
QWEN2VL_TEMPLATE = chatml_template("<|vision_start|><|image_pad|><|vision_end|>", "<|vision_start|><|video_pad|><|vision_end|>")


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
    architecture: str = "qwen2_vl"  # | "qwen2_5_vl"
    window_size: int = 32  # Qwen2.5-VL only


PRESETS = {
    p.name: p
    for p in (
        TinyQwen2VLPreset("qwen2vl-tiny", "Qwen2-VL: ViT (8-px patches, temporal 2) + 2x2 PatchMerger, Qwen2 with "
                          "M-RoPE; 1024..16384 pixels per image"),
        TinyQwen2VLPreset("qwen25vl-tiny", "Qwen2.5-VL: ViT with 32-px window attention + one full-attention "
                          "block, 2x2 PatchMerger, Qwen2 with M-RoPE; 1024..16384 pixels per image",
                          architecture="qwen2_5_vl"),
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
            ("vision_end_token_id", "<|vision_end|>"), ("video_token_id", "<|video_pad|>"))}
    text = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-6, bos_token_id=None,
                tie_word_embeddings=False, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]})
    common = dict(depth=2, num_heads=2, patch_size=p.patch_size, spatial_merge_size=p.merge_size,
                  temporal_patch_size=p.temporal_patch_size)
    if p.architecture == "qwen2_vl":
        vision = dict(common, embed_dim=32, hidden_size=64, mlp_ratio=2)
        config_cls, model_cls = tf.Qwen2VLConfig, tf.Qwen2VLForConditionalGeneration
    else:
        vision = dict(common, hidden_size=32, intermediate_size=64, out_hidden_size=64, window_size=p.window_size,
                      fullatt_block_indexes=[1])
        config_cls, model_cls = tf.Qwen2_5_VLConfig, tf.Qwen2_5_VLForConditionalGeneration
    config = config_cls(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    scaled_random_init(model, seed, p.weight_scale)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    image_processor = tf.Qwen2VLImageProcessorPil(min_pixels=p.min_pixels, max_pixels=p.max_pixels,
                                                  patch_size=p.patch_size, merge_size=p.merge_size,
                                                  temporal_patch_size=p.temporal_patch_size)
    # Qwen2VLProcessor (and Qwen2_5_VLProcessor) wants a torchvision video processor, which mmedge's environment lacks: the
    # folder is written as a Qwen2-VL checkpoint lays it out, file by file.
    image_processor.save_pretrained(out)
    # The video processor's settings as its class writes them (it cannot be built without torchvision):
    # frames get the image's pixel bounds, sampled by the class's own rule.
    write_json(out / VIDEO_PROCESSOR_FILE, {
        "video_processor_type": "Qwen2VLVideoProcessor", "size": {"shortest_edge": p.min_pixels, "longest_edge": p.max_pixels},
        "patch_size": p.patch_size, "temporal_patch_size": p.temporal_patch_size, "merge_size": p.merge_size,
        "image_mean": list(image_processor.image_mean), "image_std": list(image_processor.image_std), "resample": 3,
        "do_sample_frames": False})
    tokenizer.save_pretrained(out)
    (out / "chat_template.jinja").write_text(QWEN2VL_TEMPLATE)
    return out
