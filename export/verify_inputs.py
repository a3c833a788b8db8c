"""Fixed, deterministic inputs for verification: photo-like synthetic images and prompts.

Synthetic so that verify needs no data files; photo-like (smooth gradients, edges, texture,
odd sizes, non-square) so that resize and crop are exercised as on real photographs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


def synthetic_photo(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.zeros((height, width, 3), dtype=np.float32)
    for c in range(3):
        fx, fy, phase = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 6.28)
        img[..., c] = 127 + 90 * np.sin(fx * 6.28 * x / width + phase) * np.cos(fy * 6.28 * y / height)
    for _ in range(4):  # hard-edged discs, like objects against a background
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.1, 0.3) * min(width, height)
        mask = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        img[mask] = rng.uniform(0, 255, size=3)
    img += rng.normal(0, 8, size=img.shape)  # sensor noise
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="RGB")


@dataclass(frozen=True)
class VerifyCase:
    name: str
    image_sizes: tuple[tuple[int, int], ...]
    prompt: str  # a user message; markers in it place the images


CASES = (
    VerifyCase("one image, template placement", ((97, 61),), "What is shown in this picture?"),
    VerifyCase("two images, marker placement", ((64, 80), (120, 45)), "Compare <image> with <image> and describe both."),
)
TEACHER_FORCED_TEXT = (
    "The photograph shows a cat sleeping on a wooden chair next to an open window, while two children "
    "play with a bright yellow ball in the park and the robot places the blue cube on the green square."
)
GREEDY_TOKENS = 32


@dataclass(frozen=True)
class AudioCase:
    name: str
    seconds: tuple[float, ...]  # one clip per entry
    prompt: str  # a user message; "<audio>" markers in it place the clips


# Two lengths that give different token counts (1.3 s: 32 rows, 3.7 s: 92 rows at 16 kHz, hop 160).
AUDIO_CASES = (
    AudioCase("one clip (1.3 s), template placement", (1.3,), "What do you hear?"),
    AudioCase("two clips (3.7 s, 1.3 s), marker placement", (3.7, 1.3), "First <audio> then <audio>: which is louder?"),
)


def synthetic_audio(seconds: float, seed: int, rate: int = 16000) -> np.ndarray:
    """A chirp with a few harmonics, an amplitude envelope and noise: float32 mono in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate)), dtype=np.float64) / rate
    f0, f1 = rng.uniform(150, 400), rng.uniform(600, 2500)
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * max(seconds, 1e-3)))
    wave = sum(rng.uniform(0.1, 0.4) * np.sin(k * phase) for k in (1, 2, 3))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.5, 3.0) * t)
    return np.clip(wave * envelope + rng.normal(0, 0.02, t.shape), -1, 1).astype(np.float32)


def case_images(case: VerifyCase, seed: int = 0) -> list[Image.Image]:
    return [synthetic_photo(w, h, seed + i) for i, (w, h) in enumerate(case.image_sizes)]


def cases_for(modality: str) -> tuple:
    return AUDIO_CASES if modality == "audio" else CASES


def case_inputs(case, manifest, seed: int = 0) -> list:
    """A case's inputs: PIL images, or (samples, rate) clips at the bundle's sampling rate."""
    if isinstance(case, AudioCase):
        rate = manifest.audio.features.sampling_rate
        return [(synthetic_audio(s, seed + i, rate), rate) for i, s in enumerate(case.seconds)]
    return case_images(case, seed)
