"""The runtime side of image layouts: one image -> encoder inputs, prompt text, embedding rows.

Each manifest layout kind (`mmedge/image_layouts.py`) has one implementation here, registered by
kind. The pipeline calls `prepare` (preprocessing stage), runs the encoder and projector on the
tiles, then `assemble` turns the per-tile embeddings into the rows the image's tokens take.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from PIL import Image

from mmedge.errors import ManifestError
from mmedge.image_layouts import LayoutSpec
from mmedge.manifest import ImagePreprocessSpec, ImageSlotSpec


@dataclass
class PreparedImage:
    tiles: np.ndarray  # [T, 3, H, W] float32: what the encoder takes for this image
    text: str  # what the image's marker becomes in the prompt text
    n_rows: int  # embedding rows the image fills (image tokens in `text`)
    info: dict = field(default_factory=dict)  # layout-specific facts assemble() needs (grid shape, ...)


class ImageLayout(ABC):
    kind: ClassVar[str]

    def __init__(self, spec: LayoutSpec, preprocess: ImagePreprocessSpec, slot: ImageSlotSpec):
        self.spec, self.preprocess, self.slot = spec, preprocess, slot

    @abstractmethod
    def prepare(self, image: Image.Image) -> PreparedImage:
        ...

    def assemble(self, prepared: PreparedImage, tile_embeddings: np.ndarray) -> np.ndarray:
        """[T, tokens_per_image, D] -> [n_rows, D]; by default the tiles' rows in order."""
        return tile_embeddings.reshape(-1, tile_embeddings.shape[-1])


_LAYOUTS: dict[str, type[ImageLayout]] = {}


def register_layout(cls: type[ImageLayout]) -> type[ImageLayout]:
    _LAYOUTS[cls.kind] = cls
    return cls


def image_layout(preprocess: ImagePreprocessSpec, slot: ImageSlotSpec) -> ImageLayout:
    cls = _LAYOUTS.get(slot.layout.kind)
    if cls is None:
        raise ManifestError(f"image.layout.kind: {slot.layout.kind!r} has no runtime implementation here; upgrade mmedge")
    return cls(slot.layout, preprocess, slot)
