"""The manifest's `audio` section: how a waveform becomes encoder inputs and prompt tokens.

An audio bundle's encoder takes Whisper-style log-mel features padded to one fixed chunk
([1, n_mels, chunk_frames]) and the number of valid frames; the rows it gives for the valid
frames replace the marker's expansion (the marker repeated once per row, as HF's processor
expands `<|AUDIO|>`). The row count is data: each reduction (kernel, stride, padding) maps a
length L to (L + 2*padding - kernel) // stride + 1 (Qwen2-Audio: conv k3 s1, conv k3 s2, avg-pool 2).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .errors import ManifestError
from .validation import get_field as _get

FEATURE_KINDS = ("whisper-log-mel",)


def _positive(value: int, where: str, limit: int = 1 << 24) -> int:
    if not 1 <= value <= limit:
        raise ManifestError(f"{where}: expected 1 .. {limit}, found {value}")
    return value


@dataclass(frozen=True)
class AudioFeatureSpec:
    sampling_rate: int = 16000
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 128
    chunk_frames: int = 3000  # the encoder's fixed input length (30 s at 16 kHz, hop 160)
    kind: str = "whisper-log-mel"

    @property
    def max_samples(self) -> int:
        return self.chunk_frames * self.hop_length

    @property
    def max_seconds(self) -> float:
        return self.max_samples / self.sampling_rate

    @classmethod
    def from_dict(cls, d: dict, where: str = "audio.features") -> "AudioFeatureSpec":
        kind = _get(d, "kind", str, where)
        if kind not in FEATURE_KINDS:
            raise ManifestError(f"{where}.kind: expected one of {list(FEATURE_KINDS)}, found {kind!r}; upgrade mmedge")
        spec = cls(**{k: _positive(_get(d, k, int, where), f"{where}.{k}") for k in
                      ("sampling_rate", "n_fft", "hop_length", "n_mels", "chunk_frames")}, kind=kind)
        if spec.n_fft // 2 >= spec.max_samples:
            raise ManifestError(f"{where}: n_fft {spec.n_fft} does not fit a chunk of {spec.max_samples} samples")
        return spec


@dataclass(frozen=True)
class AudioSlotSpec:
    """How audio clips enter the prompt (the audio counterpart of `ImageSlotSpec`)."""

    marker: str
    marker_token_id: int
    embedding_dim: int
    features: AudioFeatureSpec
    # (kernel, stride, padding) of each length reduction from feature frames to embedding rows.
    reductions: tuple[tuple[int, int, int], ...]
    # Audio rows are injected like text embeddings into a causal LLM, unscaled.
    attention: ClassVar[str] = "causal"
    embedding_divisor: ClassVar[float] = 1.0

    def rows_for(self, frames: int) -> int:
        for kernel, stride, padding in self.reductions:
            frames = (frames + 2 * padding - kernel) // stride + 1
        return frames

    @classmethod
    def from_dict(cls, d: dict) -> "AudioSlotSpec":
        where = "audio"
        raw = _get(d, "reductions", list, where)
        if not raw or not all(isinstance(r, list) and len(r) == 3 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                         for v in r) for r in raw):
            raise ManifestError(f"{where}.reductions: expected a non-empty list of [kernel, stride, padding] ints, found {raw!r}")
        if any(k < 1 or s < 1 or p < 0 for k, s, p in raw):
            raise ManifestError(f"{where}.reductions: kernel and stride must be >= 1, padding >= 0, found {raw!r}")
        spec = cls(
            marker=_get(d, "marker", str, where),
            marker_token_id=_get(d, "marker_token_id", int, where),
            embedding_dim=_positive(_get(d, "embedding_dim", int, where), f"{where}.embedding_dim", 1 << 20),
            features=AudioFeatureSpec.from_dict(_get(d, "features", dict, where)),
            reductions=tuple(tuple(r) for r in raw),
        )
        if not spec.marker:
            raise ManifestError(f"{where}.marker: must not be empty")
        if spec.marker_token_id < 0:
            raise ManifestError(f"{where}.marker_token_id: expected a token id >= 0, found {spec.marker_token_id}")
        if spec.rows_for(spec.features.chunk_frames) < 1:
            raise ManifestError(f"{where}.reductions: a whole chunk of features would give no embedding row")
        return spec

    def to_dict(self) -> dict:
        return {"marker": self.marker, "marker_token_id": self.marker_token_id, "embedding_dim": self.embedding_dim,
                "reductions": [list(r) for r in self.reductions],
                "features": {"kind": self.features.kind, "sampling_rate": self.features.sampling_rate,
                             "n_fft": self.features.n_fft, "hop_length": self.features.hop_length,
                             "n_mels": self.features.n_mels, "chunk_frames": self.features.chunk_frames}}


