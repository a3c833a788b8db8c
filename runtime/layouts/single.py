"""One encoder input per image (LLaVA-1.5): the preprocess spec applied as is."""
from __future__ import annotations

from PIL import Image

from ..preprocess import preprocess_image
from .base import ImageLayout, PreparedImage, register_layout


@register_layout
class SingleViewLayout(ImageLayout):
    kind = "single"

    def prepare(self, image: Image.Image) -> PreparedImage:
        n = self.slot.tokens_per_image
        return PreparedImage(tiles=preprocess_image(image, self.preprocess)[None], text=self.slot.marker * n, n_rows=n)
