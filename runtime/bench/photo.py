"""The default bench input: a fixed photo-like image made by code (no data files in the install)."""
from __future__ import annotations

import numpy as np
from PIL import Image

SIZE = (640, 480)  # a common camera aspect, larger than every tiny model's tile, so layouts really resize


def photo_like(seed: int = 0, size: tuple[int, int] = SIZE) -> Image.Image:
    """Smooth colour waves plus sensor noise: resizing costs what it costs on a photograph, unlike
    on a flat or random image. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    img = np.stack([127 + 100 * np.sin(x / (20 + 10 * c) + rng.uniform(0, 6)) * np.cos(y / 30) for c in range(3)], -1)
    return Image.fromarray(np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8))
