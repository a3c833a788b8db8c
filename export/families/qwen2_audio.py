"""Qwen2-Audio (`Qwen2AudioForConditionalGeneration`): a Whisper-style encoder over log-mel features
(conv1d k3, conv1d k3 stride 2, learned positions, pre-norm layers, average pooling by 2, layer
norm), a linear projector, a Qwen2 backbone.

The encoder takes the features padded to the fixed chunk ([B, n_mels, 3000]) and each clip's valid
frame count ([B] int64); it builds the model's key-padding mask from the count (transformers builds
the same from the feature attention mask) and returns rows for the whole chunk. The runtime keeps
the valid rows (`audio_spec.AudioSlotSpec.rows_for`, the processor's `<|AUDIO|>` count), which
replace the audio tokens in order, as `masked_scatter` does. ONNX only (two inputs).
"""
from __future__ import annotations

from mmedge.audio_spec import AudioFeatureSpec, AudioSlotSpec
from mmedge.errors import CheckpointError, UnsupportedConfigError

from ..checkpoint import load_pretrained, quiet_transformers
from .base import Family, FamilyInfo, LoadedCheckpoint, register_family
from .common import prompt_spec, text_backbone

# conv1 (k3 s1 p1), conv2 (k3 s2 p1), avg-pool (k2 s2): feature frames -> rows, as
# _get_feat_extract_output_lengths computes them.
REDUCTIONS = ((3, 1, 1), (3, 2, 1), (2, 2, 0))


def _encoder_class():
    import torch

    class Encoder(torch.nn.Module):
        """input_features [B, n_mels, T] + feature_lengths [B] -> the audio tower's rows [B, T/4, d_model]."""

        def __init__(self, tower):
            super().__init__()
            self.tower = tower
            self.eager = tower.config._attn_implementation == "eager"

        def forward(self, input_features, feature_lengths):
            lengths = (feature_lengths - 1) // 2 + 1  # frames after conv2's stride
            steps = input_features.shape[-1] // 2
            valid = torch.arange(steps, device=input_features.device)[None, :] < lengths[:, None]
            keys = valid[:, None, None, :].expand(-1, 1, steps, steps)
            # The mask transformers builds for the configured attention: boolean (sdpa) or additive (eager).
            mask = torch.zeros(keys.shape).masked_fill(~keys, torch.finfo(torch.float32).min) if self.eager else keys
            return self.tower(input_features, attention_mask=mask).last_hidden_state

    return Encoder


def _check(config, fe) -> None:
    if type(fe).__name__ != "WhisperFeatureExtractor":
        raise UnsupportedConfigError(f"feature extractor {type(fe).__name__} is not reproduced; mmedge computes "
                                     "WhisperFeatureExtractor's log-mel features")
    audio = config.audio_config
    if int(fe.feature_size) != int(audio.num_mel_bins):
        raise UnsupportedConfigError(f"the feature extractor gives {fe.feature_size} mel bins, the encoder takes "
                                     f"{audio.num_mel_bins}; the checkpoint's files disagree")
    if int(fe.nb_max_frames) != 2 * int(audio.max_source_positions):
        raise UnsupportedConfigError(f"the feature extractor pads to {fe.nb_max_frames} frames, the encoder takes "
                                     f"{2 * audio.max_source_positions}; the checkpoint's files disagree")
    if float(getattr(fe, "dither", 0.0)) != 0.0 or float(fe.padding_value) != 0.0:
        raise UnsupportedConfigError("feature extractors with dither or a non-zero padding_value are not reproduced "
                                     "(dither is random); set both to 0.0 in the processor config")
    if config.text_config.model_type != "qwen2":
        raise UnsupportedConfigError(f"text backbone {config.text_config.model_type!r} is not supported; supported: ('qwen2',)")
    if getattr(audio, "scale_embedding", False):
        raise UnsupportedConfigError("audio encoders with scale_embedding=True are not supported")


@register_family
class Qwen2AudioFamily(Family):
    info = FamilyInfo(
        name="qwen2_audio",
        architectures=("Qwen2AudioForConditionalGeneration",),
        modalities=("audio",),
        projector="linear (audio rows -> LLM width)",
        encoders=("Whisper-style audio encoder over 128-bin log-mel, 30-s chunk, avg-pool 2",),
        backbones=("qwen2",),
        targets=("onnx", "gguf"),  # the encoder takes two inputs: only the ONNX target compiles that
        static_calibration=False,
    )

    def load(self, path: str) -> LoadedCheckpoint:
        quiet_transformers()
        import transformers

        try:
            config = transformers.Qwen2AudioConfig.from_pretrained(str(path), local_files_only=True)
            processor = transformers.Qwen2AudioProcessor.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, TypeError) as e:
            raise CheckpointError(f"{path}: not a Qwen2-Audio checkpoint transformers can read: {e}") from None
        _check(config, processor.feature_extractor)
        model, config = load_pretrained(transformers.Qwen2AudioForConditionalGeneration, path)
        return LoadedCheckpoint(model=model, processor=processor, config=config, path=str(path))

    # -- parts -----------------------------------------------------------------------------------
    def encoder(self, ckpt: LoadedCheckpoint):
        return _encoder_class()(ckpt.model.model.audio_tower).eval()

    def vision_encoder(self, ckpt: LoadedCheckpoint):
        raise NotImplementedError("Qwen2-Audio has no vision encoder; use encoder()")

    def projector(self, ckpt: LoadedCheckpoint):
        return ckpt.model.model.multi_modal_projector

    def reference_image_features(self, ckpt: LoadedCheckpoint, pixel_values):
        raise NotImplementedError("Qwen2-Audio takes no images")

    def reference_features(self, ckpt: LoadedCheckpoint, input_features, feature_lengths):
        """The model's own path (its forward's audio branch): mask from create_bidirectional_mask,
        audio tower, projector; rows for the whole chunk."""
        import torch
        from transformers.masking_utils import create_bidirectional_mask

        model = ckpt.model.model
        lengths, _ = model.audio_tower._get_feat_extract_output_lengths(feature_lengths)
        steps = (input_features.shape[-1] - 2) // 2 + 1
        mask_2d = (torch.arange(steps)[None, :] < lengths[:, None]).long()
        mask = create_bidirectional_mask(config=model.audio_tower.config,
                                         inputs_embeds=torch.zeros(len(input_features), steps, 1), attention_mask=mask_2d)
        return model.multi_modal_projector(model.audio_tower(input_features, attention_mask=mask).last_hidden_state)

    def encoder_example(self, ckpt: LoadedCheckpoint, preprocess) -> dict:
        """Two clips' features (random values) of different valid lengths."""
        import torch

        fe = ckpt.processor.feature_extractor
        torch.manual_seed(0)
        return {"input_features": torch.randn(2, int(fe.feature_size), int(fe.nb_max_frames)),
                "feature_lengths": torch.tensor([130, int(fe.nb_max_frames) // 3], dtype=torch.int64)}

    def text_backbone(self, ckpt: LoadedCheckpoint):
        return text_backbone(ckpt, ckpt.model.model.language_model, ckpt.model.lm_head, ckpt.config.text_config)

    # -- data for the runtime ----------------------------------------------------------------------
    def image_preprocess(self, ckpt: LoadedCheckpoint):
        raise NotImplementedError("Qwen2-Audio takes no images")

    def image_slot(self, ckpt: LoadedCheckpoint):
        raise NotImplementedError("Qwen2-Audio takes no images")

    def audio_slot(self, ckpt: LoadedCheckpoint) -> AudioSlotSpec:
        fe, processor = ckpt.processor.feature_extractor, ckpt.processor
        return AudioSlotSpec(
            marker=processor.audio_token, marker_token_id=int(processor.audio_token_id),
            embedding_dim=int(ckpt.model.model.multi_modal_projector.linear.out_features),
            features=AudioFeatureSpec(sampling_rate=int(fe.sampling_rate), n_fft=int(fe.n_fft),
                                      hop_length=int(fe.hop_length), n_mels=int(fe.feature_size),
                                      chunk_frames=int(fe.nb_max_frames)),
            reductions=REDUCTIONS)

    def media_sections(self, ckpt: LoadedCheckpoint) -> dict:
        return {"image_preprocess": None, "image": None, "audio": self.audio_slot(ckpt)}

    def media_slot(self, ckpt: LoadedCheckpoint) -> AudioSlotSpec:
        return self.audio_slot(ckpt)

    def prompt(self, ckpt: LoadedCheckpoint):
        return prompt_spec(ckpt)

    def reference_inputs(self, ckpt: LoadedCheckpoint, clips: list, text: str) -> dict:
        """HF's processor on the text and clips ((samples, rate) pairs)."""
        if not clips:
            return ckpt.processor(text=text, return_tensors="pt")
        rate = {int(r) for _, r in clips}.pop()
        return ckpt.processor(text=text, audio=[s for s, _ in clips], sampling_rate=rate, return_tensors="pt")

    def reference_encoder_inputs(self, ckpt: LoadedCheckpoint, clip, marker: str) -> dict:
        out = self.reference_inputs(ckpt, [clip], marker)
        return {"input_features": out["input_features"],
                "feature_lengths": out["feature_attention_mask"].sum(-1).long()}
