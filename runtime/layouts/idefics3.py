"""Idefics3 / SmolVLM tiling, step for step as transformers' PIL image processor and processor.

1. Resize so the longest edge is `longest_edge` (small images are enlarged too), the other side
   truncated then made even; then capped at `max_side`.
2. Resize again so both sides are multiples of `tile_size` (the short side through the aspect
   ratio, as transformers computes it).
3. Cut `tile_size` tiles row by row; add the step-2 image resized to one tile (the global view).
   An image that is one tile after step 2 is used alone, with no row/column tags.
Every resize is PIL on uint8 pixels, as the reference does.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

from mmedge.image_layouts import Idefics3Tiles

from ..preprocess import normalize_pixels, prepared_rgb, resize_rgb
from .base import ImageLayout, PreparedImage, register_layout


def longest_edge_size(height: int, width: int, longest: int) -> tuple[int, int]:
    aspect = width / height
    if width >= height:
        width = longest
        height = int(width / aspect)
        height += height % 2
    else:
        height = longest
        width = int(height * aspect)
        width += width % 2
    return max(height, 1), max(width, 1)


def capped_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    aspect = width / height
    if width >= height and width > max_side:
        width, height = max_side, int(max_side / aspect)
    elif height > width and height > max_side:
        height, width = max_side, int(max_side * aspect)
    return max(height, 1), max(width, 1)


def tile_multiple_size(height: int, width: int, tile: int) -> tuple[int, int]:
    aspect = width / height
    if width >= height:
        width = math.ceil(width / tile) * tile
        height = math.ceil(int(width / aspect) / tile) * tile
    else:
        height = math.ceil(height / tile) * tile
        width = math.ceil(int(height * aspect) / tile) * tile
    return height, width


@register_layout
class Idefics3TilesLayout(ImageLayout):
    kind = "idefics3-tiles"
    spec: Idefics3Tiles

    def prepare(self, image: Image.Image) -> PreparedImage:
        s, pre = self.spec, self.preprocess
        image = prepared_rgb(image, pre)
        h, w = capped_size(*longest_edge_size(image.height, image.width, s.longest_edge), s.max_side)
        first = Image.fromarray(resize_rgb(image, h, w, pre))
        if not s.split:
            views, rows, cols = [resize_rgb(first, s.tile_size, s.tile_size, pre)], 0, 0
        else:
            h2, w2 = tile_multiple_size(h, w, s.tile_size)
            second = resize_rgb(first, h2, w2, pre)
            if h2 > s.tile_size or w2 > s.tile_size:
                rows, cols = h2 // s.tile_size, w2 // s.tile_size
                t = s.tile_size
                views = [second[r * t:(r + 1) * t, c * t:(c + 1) * t] for r in range(rows) for c in range(cols)]
                views.append(resize_rgb(Image.fromarray(second), t, t, pre))
            else:
                views, rows, cols = [second], 0, 0
        tiles = np.stack([normalize_pixels(v, pre) for v in views])
        return PreparedImage(tiles=tiles, text=self.prompt_text(rows, cols), n_rows=len(views) * self.slot.tokens_per_image,
                             info={"rows": rows, "cols": cols})

    def prompt_text(self, rows: int, cols: int) -> str:
        s = self.spec
        image_run = s.image_token * self.slot.tokens_per_image
        global_view = f"{s.fake_image_token}{s.global_image_token}{image_run}{s.fake_image_token}"
        if rows == 0 and cols == 0:
            return global_view
        text = ""
        for r in range(rows):
            for c in range(cols):
                text += f"{s.fake_image_token}<row_{r + 1}_col_{c + 1}>{image_run}"
            text += "\n"
        return text + "\n" + global_view
