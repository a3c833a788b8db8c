"""Whisper-style log-mel features in numpy, driven by the manifest's `AudioFeatureSpec`.

What transformers' `WhisperFeatureExtractor` computes (the reference the parity tests compare
with): the waveform zero-padded to `chunk_frames * hop_length` samples, a centred STFT (reflect
padding of n_fft/2, periodic Hann window), power spectrum, Slaney-normalised mel filters on the
Slaney mel scale (0 Hz .. sampling_rate/2), log10 of max(x, 1e-10), the last frame dropped, values
floored at the maximum minus 8, then (x + 4) / 4. The valid frames are ceil(samples / hop_length)
(the processor's attention mask). The spectrum is computed in float32 as the torch path does.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from mmedge.errors import RuntimeInputError
from mmedge.audio_spec import AudioFeatureSpec


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    linear = 3.0 * freq / 200.0
    log = 15.0 + np.log(np.maximum(freq, 1e-12) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(freq >= 1000.0, log, linear)


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    linear = 200.0 * mels / 3.0
    log = 1000.0 * np.exp(np.log(6.4) / 27.0 * (mels - 15.0))
    return np.where(mels >= 15.0, log, linear)


@lru_cache(maxsize=4)
def mel_filters(n_fft: int, n_mels: int, sampling_rate: int) -> np.ndarray:
    """[n_fft/2 + 1, n_mels] triangular filters with Slaney's area normalisation (float64)."""
    fft_freqs = np.linspace(0, sampling_rate // 2, 1 + n_fft // 2)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sampling_rate / 2), n_mels + 2))
    slopes = edges[None, :] - fft_freqs[:, None]
    widths = np.diff(edges)
    down, up = -slopes[:, :-2] / widths[:-1], slopes[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    filters *= (2.0 / (edges[2:n_mels + 2] - edges[:n_mels]))[None, :]
    if (filters.max(axis=0) == 0.0).any():
        raise RuntimeInputError(f"{n_mels} mel filters over {1 + n_fft // 2} FFT bins leave a filter empty; "
                                "the bundle's audio features are inconsistent, re-export it")
    return filters


def _hann(n: int) -> np.ndarray:
    """The periodic Hann window (torch.hann_window's default)."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


def valid_frames(n_samples: int, spec: AudioFeatureSpec) -> int:
    """Frames the processor's attention mask marks as audio: ceil(samples / hop_length)."""
    return min(-(-n_samples // spec.hop_length), spec.chunk_frames)


def log_mel(waveform: np.ndarray, spec: AudioFeatureSpec) -> tuple[np.ndarray, int]:
    """A mono float32 waveform at spec.sampling_rate -> ([n_mels, chunk_frames] float32, valid frames)."""
    n_total = spec.chunk_frames * spec.hop_length
    if waveform.ndim != 1 or not 0 < len(waveform) <= n_total:
        raise RuntimeInputError(f"audio: expected 1 .. {n_total} mono samples, got shape {waveform.shape}")
    padded = np.zeros(n_total, np.float32)
    padded[:len(waveform)] = waveform
    half = spec.n_fft // 2
    signal = np.pad(padded, half, mode="reflect")
    n_frames = 1 + (len(signal) - spec.n_fft) // spec.hop_length
    starts = np.arange(n_frames)[:, None] * spec.hop_length
    frames = signal[starts + np.arange(spec.n_fft)[None, :]] * _hann(spec.n_fft)
    spectrum = np.fft.rfft(frames, axis=1).astype(np.complex64)
    power = (spectrum.real * spectrum.real + spectrum.imag * spectrum.imag).astype(np.float32)[:-1]  # last frame dropped
    filters = mel_filters(spec.n_fft, spec.n_mels, spec.sampling_rate).astype(np.float32)
    mel = filters.T @ power.T  # [n_mels, frames]
    out = np.log10(np.maximum(mel, np.float32(1e-10)))
    out = np.maximum(out, out.max() - np.float32(8.0))
    out = (out + np.float32(4.0)) / np.float32(4.0)
    return np.ascontiguousarray(out, dtype=np.float32), valid_frames(len(waveform), spec)
