"""WAV files -> mono float32 waveforms, with the refusals a user can act on.

Read with our own RIFF walk (the standard library's `wave` reads PCM only): PCM 16-bit and IEEE
float 32-bit, plain or WAVE_FORMAT_EXTENSIBLE, any channel count (averaged to mono, as HF's
`load_audio` does). No resampling: a resampler would have to equal the reference's sample for
sample, so another rate is refused naming the rate the bundle expects.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from mmedge.errors import AudioError

PCM, IEEE_FLOAT, EXTENSIBLE = 1, 3, 0xFFFE
# A WAV larger than this is not a clip for an edge model (30 s of 8-channel float is ~15 MB).
MAX_FILE_BYTES = 256 * 1024 * 1024


def _chunks(data: bytes, name: str):
    """(id, body) of each RIFF chunk after the 12-byte header."""
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = data[pos + 8:pos + 8 + size]
        if len(body) < size:
            if cid == b"data":  # a truncated data chunk: the file was cut short
                raise AudioError(f"{name}: the data chunk says {size} bytes but the file holds {len(body)}; "
                                 "the file is truncated, export the audio again")
            return
        yield cid, body
        pos += 8 + size + (size & 1)  # chunks are padded to an even length


def _decode(fmt: bytes, body: bytes, name: str) -> tuple[np.ndarray, int]:
    """fmt chunk + data chunk -> ([frames, channels] float32, sampling rate)."""
    if len(fmt) < 16:
        raise AudioError(f"{name}: the WAV fmt chunk is {len(fmt)} bytes, expected at least 16; the header is damaged")
    tag, channels, rate, _, block, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack("<H", fmt[24:26])[0]  # the sub-format GUID starts with the format tag
    if channels < 1 or rate < 1:
        raise AudioError(f"{name}: the WAV header says {channels} channels at {rate} Hz; the header is damaged")
    if (tag, bits) == (PCM, 16):
        samples = np.frombuffer(body[:len(body) // 2 * 2], dtype="<i2").astype(np.float32) / np.float32(32768.0)
    elif (tag, bits) == (IEEE_FLOAT, 32):
        samples = np.frombuffer(body[:len(body) // 4 * 4], dtype="<f4").astype(np.float32)
    else:
        kind = {PCM: "PCM", IEEE_FLOAT: "float"}.get(tag, f"format tag {tag}")
        raise AudioError(f"{name}: {bits}-bit {kind} WAV is not decoded; expected 16-bit PCM or 32-bit float WAV. "
                         "Convert it, e.g. `ffmpeg -i in.wav -c:a pcm_s16le out.wav`")
    if block != channels * bits // 8:
        raise AudioError(f"{name}: block align {block} does not match {channels} channels of {bits} bits; the header is damaged")
    frames = len(samples) // channels
    return samples[:frames * channels].reshape(frames, channels), rate


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """A WAV file -> (mono float32 samples in [-1, 1], sampling rate)."""
    path = Path(path)
    name = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise AudioError(f"{name}: {size} bytes, more than the {MAX_FILE_BYTES} an audio clip may take")
        data = path.read_bytes()
    except OSError as e:
        raise AudioError(f"{name}: cannot read the audio file ({e.strerror}); check the path") from None
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioError(f"{name}: not a WAV file (no RIFF/WAVE header); give a .wav file (16-bit PCM or 32-bit float)")
    chunks = dict(_chunks(data, name))
    if b"fmt " not in chunks or b"data" not in chunks:
        raise AudioError(f"{name}: the WAV has no {'fmt' if b'fmt ' not in chunks else 'data'} chunk; "
                         "the file is truncated or damaged")
    samples, rate = _decode(chunks[b"fmt "], chunks[b"data"], name)
    mono = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1, dtype=np.float32)
    if not np.isfinite(mono).all():
        raise AudioError(f"{name}: the samples hold NaN or infinity; the file is damaged")
    return np.ascontiguousarray(mono, dtype=np.float32), rate


def check_clip(samples: np.ndarray, rate: int, expected_rate: int, max_samples: int, min_samples: int, name: str) -> None:
    """Refuse a clip the bundle's encoder cannot take, saying what it takes."""
    if rate != expected_rate:
        raise AudioError(f"{name}: sampled at {rate} Hz, the bundle's audio encoder expects {expected_rate} Hz; "
                         f"resample it first, e.g. `ffmpeg -i in.wav -ar {expected_rate} out.wav`")
    if len(samples) < min_samples:
        raise AudioError(f"{name}: {len(samples)} samples ({len(samples) / rate:.3f} s) is too short; "
                         f"the encoder needs at least {min_samples} samples")
    if len(samples) > max_samples:
        raise AudioError(f"{name}: {len(samples) / rate:.2f} s is longer than the {max_samples / rate:.0f} s the encoder "
                         "takes in one clip; cut it into shorter clips")
