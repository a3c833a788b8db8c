"""Seeded tiny LLaVA-NeXT and LLaVA-OneVision checkpoints.

Tiles of 32 pixels (4x4 patches of 8) and pinpoints of up to 3x4 tiles, so that small test images
select several grids, need padding and unpadding, and (OneVision) a large grid is pooled.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..hf_processors import image_only_onevision_processor
from ..video_processors import VIDEO_PROCESSOR_FILE
from .llava import LLAVA15_TEMPLATE, TinyLlavaPreset, _text_config, _vision_config
from .templates import chatml_template
from .tokenizers import TOKENIZER_BUILDERS
from .weights import scaled_random_init, write_json

# ChatML with OneVision's markers: images, then videos, then the text.
ONEVISION_TEMPLATE = chatml_template("<image>\n", "<video>\n")


@dataclass(frozen=True)
class TinyAnyResPreset(TinyLlavaPreset):
    family: str = "next"  # "next" | "onevision"
    grid_pinpoints: tuple = ()
    vision_aspect_ratio: str = "anyres_max_9"  # OneVision only


_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)

PRESETS: dict[str, TinyAnyResPreset] = {
    p.name: p
    for p in (
        TinyAnyResPreset(
            name="next-clip-llama",
            description="LLaVA-NeXT: CLIP ViT (layer -2, CLS dropped) + Llama, Llama-3 BPE; 32-px tiles, grids 1x2 .. 3x1",
            tokenizer="llama3-bpe", vision="clip", text="llama", chat_template=LLAVA15_TEMPLATE,
            vision_dims=_VISION, text_dims=_TEXT, image_size=32, patch_size=8, vision_feature_layer=-2,
            strategy="default", weight_scale=1.5, family="next",
            grid_pinpoints=((32, 64), (64, 32), (64, 64), (96, 32), (32, 96)),
        ),
        TinyAnyResPreset(
            name="onevision-siglip-qwen2",
            description="LLaVA-OneVision: SigLIP ViT (last layer, full) + Qwen2, tied; 32-px tiles up to 3x4, anyres_max_9 pooling",
            tokenizer="qwen2-bpe", vision="siglip", text="qwen2", chat_template=ONEVISION_TEMPLATE,
            vision_dims=_VISION, text_dims=_TEXT, image_size=32, patch_size=8, vision_feature_layer=-1,
            strategy="full", tie_word_embeddings=True, weight_scale=2.0, family="onevision",
            grid_pinpoints=((32, 32), (32, 64), (64, 32), (64, 64), (64, 96), (96, 64), (96, 96), (96, 128), (128, 96)),
        ),
    )
}


def _parts(p: TinyAnyResPreset, tokenizer):
    """(config class, model class, processor) for the preset's family."""
    import transformers as t

    pinpoints = [list(x) for x in p.grid_pinpoints]
    side = p.image_size // p.patch_size
    if p.family == "next":
        ip = t.LlavaNextImageProcessorPil(size={"shortest_edge": p.image_size},
                                          crop_size={"height": p.image_size, "width": p.image_size},
                                          image_grid_pinpoints=pinpoints)
        processor = t.LlavaNextProcessor(image_processor=ip, tokenizer=tokenizer, patch_size=p.patch_size,
                                         vision_feature_select_strategy=p.strategy, chat_template=p.chat_template,
                                         num_additional_image_tokens=int(p.vision == "clip"), image_token="<image>")
        return t.LlavaNextConfig, t.LlavaNextForConditionalGeneration, processor, {}
    ip = t.LlavaOnevisionImageProcessorPil(size={"height": p.image_size, "width": p.image_size},
                                           image_mean=[0.5] * 3, image_std=[0.5] * 3, image_grid_pinpoints=pinpoints)
    processor = image_only_onevision_processor()(image_processor=ip, tokenizer=tokenizer,
                                          num_image_tokens=side * side + int(p.vision == "clip"),
                                          vision_feature_select_strategy=p.strategy, chat_template=p.chat_template,
                                          vision_aspect_ratio=p.vision_aspect_ratio)
    extra = {"vision_aspect_ratio": p.vision_aspect_ratio,
             "video_token_index": tokenizer.convert_tokens_to_ids("<video>")}
    return t.LlavaOnevisionConfig, t.LlavaOnevisionForConditionalGeneration, processor, extra


def build_tiny_anyres(out_dir: str | Path, preset: str, seed: int = 0) -> Path:
    """Write a tiny random-weight LLaVA-NeXT / OneVision checkpoint folder and return its path."""
    import torch

    p = PRESETS[preset]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = TOKENIZER_BUILDERS[p.tokenizer]()
    if p.family == "onevision":  # its processor looks up a video token too
        tokenizer.add_special_tokens({"additional_special_tokens": ["<video>"]})
    config_cls, model_cls, processor, extra = _parts(p, tokenizer)
    config = config_cls(
        vision_config=_vision_config(p),
        text_config=_text_config(p, tokenizer),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        projector_hidden_act="gelu",
        vision_feature_select_strategy=p.strategy,
        vision_feature_layer=p.vision_feature_layer,
        image_grid_pinpoints=[list(x) for x in p.grid_pinpoints],
        tie_word_embeddings=p.tie_word_embeddings,
        **extra,
    )
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    scaled_random_init(model, seed, p.weight_scale)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    if p.family == "onevision":
        # Its video processor (torchvision-only, not buildable here) as the class writes its settings:
        # frames squashed to the tile, normalized as the images.
        ip = processor.image_processor
        write_json(out / VIDEO_PROCESSOR_FILE, {
            "video_processor_type": "LlavaOnevisionVideoProcessor", "size": {"height": p.image_size, "width": p.image_size},
            "image_mean": list(ip.image_mean), "image_std": list(ip.image_std), "resample": 3, "do_sample_frames": False})
    return out
