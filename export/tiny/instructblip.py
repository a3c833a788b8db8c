"""Seeded tiny InstructBLIP checkpoint: BLIP ViT, Q-Former reading the prompt (BERT WordPiece),
Llama backbone with the Llama-3 style BPE (+ `<image>`)."""
from __future__ import annotations

from pathlib import Path

from .tokenizers import build_bert_wordpiece, build_llama3_bpe
from .weights import scaled_random_init

PRESETS = ("instructblip-llama",)
IMAGE_SIZE, PATCH_SIZE, QUERY_TOKENS = 32, 8, 8


def build_tiny_instructblip(out_dir: str | Path, preset: str = "instructblip-llama", seed: int = 0) -> Path:
    import torch
    from transformers import (BlipImageProcessor, InstructBlipConfig, InstructBlipForConditionalGeneration,
                              InstructBlipProcessor, InstructBlipQFormerConfig, InstructBlipVisionConfig, LlamaConfig)

    if preset not in PRESETS:
        raise KeyError(f"unknown InstructBLIP preset {preset!r}; known: {PRESETS}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # InstructBlipProcessor reads a named image_token as an AddedToken (a plain string fails), so
    # `<image>` stays an unnamed special token, as in the released checkpoints.
    tokenizer = build_llama3_bpe(image_attribute=False)
    qformer_tokenizer = build_bert_wordpiece()
    vision = InstructBlipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                      image_size=IMAGE_SIZE, patch_size=PATCH_SIZE)
    qformer = InstructBlipQFormerConfig(vocab_size=len(qformer_tokenizer), hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=2, cross_attention_frequency=1,
                                        max_position_embeddings=64, pad_token_id=qformer_tokenizer.pad_token_id)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, rms_norm_eps=1e-5,
                       tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    config = InstructBlipConfig(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(),
                                text_config=text.to_dict(), num_query_tokens=QUERY_TOKENS,
                                image_token_index=tokenizer.convert_tokens_to_ids("<image>"))
    torch.manual_seed(seed)
    model = InstructBlipForConditionalGeneration(config).eval()
    scaled_random_init(model, seed, 1.5)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    processor = InstructBlipProcessor(
        image_processor=BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tokenizer=tokenizer, qformer_tokenizer=qformer_tokenizer, num_query_tokens=QUERY_TOKENS)
    processor.save_pretrained(out)
    return out
