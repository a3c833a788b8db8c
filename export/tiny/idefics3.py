"""Seeded tiny Idefics3 and SmolVLM checkpoints: SigLIP-style ViT, pixel-shuffle connector, Llama.

Idefics3's tiles are 48 px (6x6 patches of 8 px, 9 image tokens per tile after the 2x pixel
shuffle) with images first resized to a longest edge of 144 px: up to 3x3 tiles plus the global
view. SmolVLM's are 32 px (4 tokens) up to 4x4. The tiling path is exercised at every test.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .tokenizers import TOKENIZER_BUILDERS
from .weights import scaled_random_init

# Our own chat template in SmolVLM's shape: "User:<image> text<end_of_utterance>\nAssistant:".
IDEFICS3_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}:"
    "{% if message['content'] is string %}{{ ' ' + message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}{% else %}{{ ' ' + part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<end_of_utterance>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


@dataclass(frozen=True)
class TinyIdefics3Preset:
    name: str
    description: str
    architecture: str  # "idefics3" | "smolvlm"
    tile_size: int = 48
    patch_size: int = 8
    longest_edge: int = 144
    scale_factor: int = 2
    weight_scale: float = 1.5


PRESETS = {
    p.name: p
    for p in (
        TinyIdefics3Preset("idefics3-llama", "Idefics3: ViT + pixel shuffle (x2) + linear, Llama, tiles of 48 px",
                           "idefics3"),
        TinyIdefics3Preset("smolvlm-llama", "SmolVLM: ViT + pixel shuffle (x2) + linear, Llama, tiles of 32 px "
                           "(4 per tile), up to 4x4 tiles", "smolvlm", tile_size=32, longest_edge=128, weight_scale=1.25),
    )
}


def build_tiny_idefics3(out_dir: str | Path, preset: str, seed: int = 0) -> Path:
    import torch
    import transformers as tf

    p = PRESETS[preset]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = TOKENIZER_BUILDERS["idefics3-bpe"]()
    classes = {
        "idefics3": (tf.Idefics3Config, tf.Idefics3VisionConfig, tf.Idefics3ForConditionalGeneration,
                     tf.Idefics3ImageProcessorPil, tf.Idefics3Processor),
        "smolvlm": (tf.SmolVLMConfig, tf.SmolVLMVisionConfig, tf.SmolVLMForConditionalGeneration,
                    tf.SmolVLMImageProcessorPil, None),
    }
    config_cls, vision_cls, model_cls, image_processor_cls, processor_cls = classes[p.architecture]
    text_config = tf.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    vision_config = vision_cls(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               image_size=p.tile_size, patch_size=p.patch_size)
    config = config_cls(vision_config=vision_config.to_dict(), text_config=text_config.to_dict(),
                        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), scale_factor=p.scale_factor,
                        tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    scaled_random_init(model, seed, p.weight_scale)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    image_seq_len = (p.tile_size // p.patch_size) ** 2 // p.scale_factor**2
    image_processor = image_processor_cls(size={"longest_edge": p.longest_edge},
                                          max_image_size={"longest_edge": p.tile_size})
    if p.architecture == "smolvlm":
        # SmolVLM's processor cannot be built here (its video half needs torchvision), so the
        # folder is written as a SmolVLM checkpoint lays it out, file by file.
        image_processor.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / "processor_config.json").write_text(
            json.dumps({"image_seq_len": image_seq_len, "processor_class": "SmolVLMProcessor"}, indent=2))
        (out / "chat_template.jinja").write_text(IDEFICS3_TEMPLATE)
    else:
        processor_cls(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=image_seq_len,
                      chat_template=IDEFICS3_TEMPLATE).save_pretrained(out)
    return out
