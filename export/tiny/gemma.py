"""Seeded tiny Gemma 3 and PaliGemma checkpoints: SigLIP tower, Gemma-style SentencePiece tokenizer.

Gemma 3: two text layers, one sliding (window 16, shorter than every test prompt, so the window
really masks) and one global, different rope bases for the two; 16 image tokens avg-pooled from
8x8 patches. PaliGemma: Gemma 1 backbone, a linear projector, 64 image tokens and the whole prompt
as a bidirectional prefix.
"""
from __future__ import annotations

from pathlib import Path

from .tokenizers import build_gemma_spm
from .weights import scaled_random_init

# A short Gemma 3 style template: turns, images as <start_of_image> before the text.
GEMMA3_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] | trim }}{% else %}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<start_of_image>' }}{% elif item['type'] == 'text' %}{{ item['text'] | trim }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
GEMMA3_IMAGE_TOKENS = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
PALIGEMMA_IMAGE_TOKENS = {"image_token": "<image>"}

IMAGE_SIZE, PATCH_SIZE = 32, 4  # 8x8 patches
TEXT_DIMS = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, max_position_embeddings=2048, rms_norm_eps=1e-6)
VISION_DIMS = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                   image_size=IMAGE_SIZE, patch_size=PATCH_SIZE)


# Gemma 3's block outputs pass a norm before the residual add; trained models give those norms large
# weights. With weights near 1 the tiny model repeats the last token forever, so they get +8.
GEMMA3_OUTPUT_NORMS = ("post_attention_layernorm", "post_feedforward_layernorm")


def _gemma_init(model, seed: int, weight_scale: float, boosted_norms: tuple[str, ...] = (), boost: float = 8.0) -> None:
    """scaled_random_init, then token embeddings of std 1/sqrt(hidden) (Gemma multiplies them by
    sqrt(hidden), so they enter at unit scale as in a trained model), then `boosted_norms` raised."""
    import torch

    scaled_random_init(model, seed, weight_scale)
    emb = model.get_input_embeddings().weight
    with torch.no_grad():
        emb.mul_(emb.shape[1] ** -0.5)
        for name, param in model.named_parameters():
            if any(n in name for n in boosted_norms):
                param.add_(boost)


def _save(model, processor, tokenizer, out: Path) -> Path:
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "tokenizer.model").write_bytes(tokenizer.mmedge_spm_model)
    return out


def build_tiny_gemma3(out_dir: str | Path, seed: int = 0, weight_scale: float = 1.25) -> Path:
    import torch
    from transformers import (Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessor, Gemma3Processor,
                              Gemma3TextConfig, SiglipVisionConfig)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_gemma_spm(GEMMA3_IMAGE_TOKENS)
    text = Gemma3TextConfig(
        vocab_size=len(tok), **TEXT_DIMS, query_pre_attn_scalar=16, sliding_window=16,
        layer_types=["sliding_attention", "full_attention"],
        rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                         "full_attention": {"rope_type": "default", "rope_theta": 1000000.0}},
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )
    config = Gemma3Config(
        text_config=text, vision_config=SiglipVisionConfig(**VISION_DIMS, vision_use_head=False),
        mm_tokens_per_image=16, boi_token_index=tok.boi_token_id, eoi_token_index=tok.eoi_token_id,
        image_token_index=tok.image_token_id,
    )
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config).eval()
    _gemma_init(model, seed, weight_scale, GEMMA3_OUTPUT_NORMS)
    model.generation_config.pad_token_id = tok.pad_token_id
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tokenizer=tok, chat_template=GEMMA3_TEMPLATE, image_seq_length=16,
    )
    return _save(model, processor, tok, out)


def build_tiny_paligemma(out_dir: str | Path, seed: int = 0, weight_scale: float = 2.0) -> Path:
    import torch
    from transformers import (GemmaConfig, PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor,
                              SiglipImageProcessor, SiglipVisionConfig)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_gemma_spm(PALIGEMMA_IMAGE_TOKENS)
    image_processor = SiglipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    image_processor.image_seq_length = (IMAGE_SIZE // PATCH_SIZE) ** 2
    # The processor adds PaliGemma's 1152 <locNNNN>/<segNNN> tokens: build it first, size the vocabulary after.
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tok)
    text = GemmaConfig(vocab_size=len(tok), **TEXT_DIMS, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id)
    config = PaliGemmaConfig(
        text_config=text, vision_config=SiglipVisionConfig(**VISION_DIMS, projection_dim=TEXT_DIMS["hidden_size"]),
        image_token_index=tok.image_token_id, projection_dim=TEXT_DIMS["hidden_size"],
    )
    torch.manual_seed(seed)
    model = PaliGemmaForConditionalGeneration(config).eval()
    _gemma_init(model, seed, weight_scale)
    model.generation_config.pad_token_id = tok.pad_token_id
    return _save(model, processor, tok, out)


PRESETS = {
    "gemma3-siglip": build_tiny_gemma3,
    "paligemma-siglip": build_tiny_paligemma,
}
