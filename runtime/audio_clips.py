"""The audio counterpart of an image layout: one clip -> encoder inputs, prompt text, rows.

`prepare` gives the log-mel features padded to the encoder's chunk ([1, n_mels, chunk_frames])
and the valid frame count ([1] int64: the encoder masks attention to the valid part, as
transformers builds its mask from the feature attention mask); the marker becomes the marker
repeated once per valid row (HF's processor's expansion of `<|AUDIO|>`). The encoder returns
rows for the whole chunk; `assemble` keeps the valid ones, which fill the audio-token run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mmedge.audio_spec import AudioSlotSpec

from .audio import check_clip, read_wav
from .layouts.base import PreparedImage, PromptHooks
from .mel import log_mel

FEATURES_INPUT, LENGTHS_INPUT = "input_features", "feature_lengths"
AudioSource = str | Path | tuple[np.ndarray, int]  # a WAV path, or (mono float32 samples, sampling rate)


class AudioClips(PromptHooks):
    def __init__(self, slot: AudioSlotSpec):
        self.slot = slot
        features = slot.features
        # The shortest clip that gives one row: frames are ceil(samples / hop).
        frames = next(f for f in range(1, features.chunk_frames + 1) if slot.rows_for(f) >= 1)
        self.min_samples = (frames - 1) * features.hop_length + 1
        self.chunk_rows = slot.rows_for(features.chunk_frames)

    def load(self, source: AudioSource) -> tuple[np.ndarray, str]:
        """(samples at the bundle's rate, a name for messages); refuses what the encoder cannot take."""
        if isinstance(source, tuple):
            samples, rate = np.asarray(source[0], dtype=np.float32), int(source[1])
            name = "audio clip"
        else:
            samples, rate = read_wav(source)
            name = str(source)
        f = self.slot.features
        check_clip(samples, rate, f.sampling_rate, f.max_samples, self.min_samples, name)
        return samples, name

    def prepare(self, source: AudioSource) -> PreparedImage:
        samples, _ = self.load(source)
        features, frames = log_mel(samples, self.slot.features)
        rows = self.slot.rows_for(frames)
        return PreparedImage(tiles=features[None], text=self.slot.marker * rows, n_rows=rows, input_name=FEATURES_INPUT,
                             extra_inputs={LENGTHS_INPUT: np.array([frames], dtype=np.int64)})

    def projected_shape(self, prepared: PreparedImage) -> tuple[int, ...]:
        return (1, self.chunk_rows, self.slot.embedding_dim)

    def assemble(self, prepared: PreparedImage, embeddings: np.ndarray) -> np.ndarray:
        return embeddings[0, :prepared.n_rows]
