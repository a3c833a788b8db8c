"""One encoder input per image: the preprocess spec applied as is. The marker becomes the image
tokens (LLaVA-1.5), or the image tokens wrapped in text (Gemma 3)."""
from __future__ import annotations

from PIL import Image

from mmedge.image_layouts import SingleViewWrapped

from ..preprocess import preprocess_image
from .base import ImageLayout, PreparedImage, register_layout


@register_layout
class SingleViewLayout(ImageLayout):
    kind = "single"

    def prepare(self, image: Image.Image) -> PreparedImage:
        n = self.slot.tokens_per_image
        return PreparedImage(tiles=preprocess_image(image, self.preprocess)[None], text=self.slot.marker * n, n_rows=n)


@register_layout
class SingleViewWrappedLayout(ImageLayout):
    kind = "single-wrapped"
    spec: SingleViewWrapped

    def prepare(self, image: Image.Image) -> PreparedImage:
        n = self.slot.tokens_per_image
        text = self.spec.before + self.spec.image_token * n + self.spec.after
        return PreparedImage(tiles=preprocess_image(image, self.preprocess)[None], text=text, n_rows=n)
