"""Seeded tiny LLaVA checkpoints (the demo's default and most tests' models)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .tokenizers import TOKENIZER_BUILDERS
from .templates import chatml_template
from .weights import scaled_random_init

# LLaVA-1.5's template (images first, then the text), written for these checkpoints.
LLAVA15_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' ' }}{% endfor %}"
    "{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] + ' ' }}{% endgeneration %}{% endfor %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
# ChatML with images before the text, as Qwen2-based LLaVA checkpoints use.
CHATML_TEMPLATE = chatml_template("<image>\n")


@dataclass(frozen=True)
class TinyLlavaPreset:
    name: str
    description: str
    tokenizer: str
    vision: str  # "clip" | "siglip"
    text: str  # "llama" | "qwen2"
    chat_template: str
    vision_dims: dict = field(default_factory=dict)
    text_dims: dict = field(default_factory=dict)
    image_size: int = 48
    patch_size: int = 8
    vision_feature_layer: int | list = -2
    strategy: str = "default"
    tie_word_embeddings: bool = False
    # Matrices get variance (weight_scale^2 / fan_in). 2.0 makes greedy text varied and very
    # sensitive to any numeric error (good for exactness tests); 1.0 is closer to a trained
    # model's conditioning (for measuring quantization).
    weight_scale: float = 2.0


PRESETS: dict[str, TinyLlavaPreset] = {
    p.name: p
    for p in (
        TinyLlavaPreset(
            name="clip-llama-bpe",
            description="CLIP ViT + Llama, Llama-3 style byte-level BPE, untied embeddings, layer -2, CLS dropped",
            tokenizer="llama3-bpe", vision="clip", text="llama", chat_template=LLAVA15_TEMPLATE,
            vision_dims=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2),
            text_dims=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2),
            vision_feature_layer=-2, strategy="default", weight_scale=1.5,
        ),
        TinyLlavaPreset(
            name="siglip-qwen2-tied",
            description="SigLIP ViT + Qwen2, tied embeddings, layers [-3, -1] concatenated, full strategy",
            tokenizer="qwen2-bpe", vision="siglip", text="qwen2", chat_template=CHATML_TEMPLATE,
            vision_dims=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2),
            text_dims=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2),
            vision_feature_layer=[-3, -1], strategy="full", tie_word_embeddings=True,
        ),
        TinyLlavaPreset(
            name="clip-llama-spm-256",
            description="CLIP ViT + Llama with SentencePiece; widths are multiples of 256 so K-quants apply",
            tokenizer="llama-spm", vision="clip", text="llama", chat_template=LLAVA15_TEMPLATE,
            vision_dims=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2),
            text_dims=dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=4),
            vision_feature_layer=-1, strategy="default", weight_scale=1.0,
        ),
    )
}
DEFAULT_PRESET = "clip-llama-bpe"


def _vision_config(preset: TinyLlavaPreset):
    from transformers import CLIPVisionConfig, SiglipVisionConfig

    cls = {"clip": CLIPVisionConfig, "siglip": SiglipVisionConfig}[preset.vision]
    return cls(image_size=preset.image_size, patch_size=preset.patch_size, **preset.vision_dims)


def _text_config(preset: TinyLlavaPreset, tokenizer):
    from transformers import LlamaConfig, Qwen2Config

    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[preset.text]
    return cls(
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        tie_word_embeddings=preset.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **preset.text_dims,
    )


def _image_processor(preset: TinyLlavaPreset):
    from transformers import CLIPImageProcessor, SiglipImageProcessor

    if preset.vision == "clip":
        return CLIPImageProcessor(
            size={"shortest_edge": preset.image_size},
            crop_size={"height": preset.image_size, "width": preset.image_size},
        )
    return SiglipImageProcessor(size={"height": preset.image_size, "width": preset.image_size})


def build_tiny_llava(out_dir: str | Path, preset: str = DEFAULT_PRESET, seed: int = 0) -> Path:
    """Write a tiny random-weight LLaVA checkpoint folder and return its path."""
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    p = PRESETS[preset]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = TOKENIZER_BUILDERS[p.tokenizer]()
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    text_config = _text_config(p, tokenizer)
    config = LlavaConfig(
        vision_config=_vision_config(p),
        text_config=text_config,
        image_token_index=image_token_id,
        projector_hidden_act="gelu",
        vision_feature_select_strategy=p.strategy,
        vision_feature_layer=p.vision_feature_layer,
        image_seq_length=(p.image_size // p.patch_size) ** 2,
        tie_word_embeddings=p.tie_word_embeddings,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    scaled_random_init(model, seed, p.weight_scale)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    num_additional = 1 if p.vision == "clip" else 0
    processor = LlavaProcessor(
        image_processor=_image_processor(p),
        tokenizer=tokenizer,
        patch_size=p.patch_size,
        vision_feature_select_strategy=p.strategy,
        chat_template=p.chat_template,
        num_additional_image_tokens=num_additional,
        image_token="<image>",
    )
    processor.save_pretrained(out)
    spm_model = getattr(tokenizer, "mmedge_spm_model", None)
    if spm_model is not None:
        (out / "tokenizer.model").write_bytes(spm_model)
    return out
