"""A seeded tiny Qwen2-Audio checkpoint: a Whisper-style encoder (128 mel bins, d_model 32, 2
layers, the real 30-s chunk of 3000 frames), average pooling, a linear projector and a Qwen2
backbone of width 64, saved with transformers' own processor (WhisperFeatureExtractor + the
qwen2-bpe tokenizer with the audio tags) and a ChatML template of ours that writes each clip as
`<|audio_bos|><|AUDIO|><|audio_eos|>` before the text."""
from __future__ import annotations

from pathlib import Path

from .templates import chatml_audio_template
from .tokenizers import TOKENIZER_BUILDERS
from .weights import scaled_random_init

QWEN2_AUDIO_TEMPLATE = chatml_audio_template("<|audio_bos|><|AUDIO|><|audio_eos|>")
PRESETS = {"qwen2audio-tiny": "Qwen2-Audio: Whisper-style encoder (128 mels, 30-s chunk, d_model 32) + avg-pool 2 + "
                              "linear projector, Qwen2 (hidden 64)"}


def build_tiny_qwen2_audio(out_dir: str | Path, preset: str = "qwen2audio-tiny", seed: int = 0,
                           weight_scale: float = 1.5) -> Path:
    import torch
    import transformers as tf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = TOKENIZER_BUILDERS["qwen2audio-bpe"]()
    text = dict(model_type="qwen2", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                rms_norm_eps=1e-6, bos_token_id=None, tie_word_embeddings=False, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    audio = dict(model_type="qwen2_audio_encoder", num_mel_bins=128, encoder_layers=2, encoder_attention_heads=2,
                 encoder_ffn_dim=64, d_model=32, max_source_positions=1500)
    config = tf.Qwen2AudioConfig(audio_config=audio, text_config=text,
                                 audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"), tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = tf.Qwen2AudioForConditionalGeneration(config).eval()
    # embed_positions holds the encoder's fixed sinusoids in the real model; random rows are fine here.
    scaled_random_init(model, seed, weight_scale)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    processor = tf.Qwen2AudioProcessor(feature_extractor=tf.WhisperFeatureExtractor(feature_size=128),
                                       tokenizer=tokenizer, chat_template=QWEN2_AUDIO_TEMPLATE)
    processor.save_pretrained(out)
    return out
