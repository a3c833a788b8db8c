"""The runtime side of image layouts: one image -> encoder inputs, prompt text, embedding rows.

Each manifest layout kind (`mmedge/image_layouts.py`) has one implementation here, registered by
kind. The pipeline calls `prepare` (preprocessing stage), runs the encoder and projector on the
tiles, then `assemble` turns the per-tile embeddings into the rows the image's tokens take.

One image is one encoder call: its tiles go in as one batch. An encoder with several inputs
(Qwen2-VL: patches and their rotary ids) gets them by name (`PreparedImage.encoder_inputs`), and
its attention spans the whole call, which is why images are never batched together.
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


# The name of the encoder's first input (the exporter names it so for every family).
PIXEL_INPUT = "pixel_values"
# The name of the projector's first input (the encoder's output).
FEATURES_INPUT = "image_features"


@dataclass
class PreparedImage:
    tiles: np.ndarray  # the encoder's first input for this image: [T, 3, H, W] float32 tiles, or Qwen2-VL's patches
    text: str  # what the image's marker becomes in the prompt text
    n_rows: int  # embedding rows the image fills (image tokens in `text`)
    info: dict = field(default_factory=dict)  # layout-specific facts assemble() needs (grid shape, ...)
    # Further named encoder inputs, for encoders with several (Qwen2-VL: "position_ids" [N, 2] int64).
    extra_inputs: dict[str, np.ndarray] = field(default_factory=dict)
    # M-RoPE: (temporal, height, width) offsets [3, n_rows] of each row from the image's first
    # position; None: the rows take consecutive positions like text.
    grid: np.ndarray | None = None
    # Further named projector inputs besides the encoder's features (InstructBLIP's Q-Former reads
    # the prompt: "qformer_input_ids", "qformer_attention_mask" [1, L] int64); set by `bind_prompt`.
    projector_inputs: dict[str, np.ndarray] = field(default_factory=dict)
    # The name of the first input (an audio clip's prepared inputs reuse this class: "input_features").
    input_name: str = PIXEL_INPUT

    # Several encoder calls for one input (a Qwen2-VL video: one per temporal group), each its inputs
    # by name; None: one call (`encoder_inputs`). The projector outputs are concatenated on axis 0.
    chunks: list[dict[str, np.ndarray]] | None = None
    # "image" or "video": which layout assembles the rows and which marker the text replaces.
    medium: str = "image"

    def encoder_inputs(self) -> dict[str, np.ndarray]:
        """What one encoder call takes, by input name."""
        return {self.input_name: self.tiles, **self.extra_inputs}

    def encoder_calls(self) -> list[dict[str, np.ndarray]]:
        """Every encoder call this input needs, in order."""
        return self.chunks if self.chunks is not None else [self.encoder_inputs()]


class PromptHooks:
    """How a media layout takes part in prompt building; the defaults place media by markers only.
    (Image layouts and audio clips share these.)"""

    # True: the media rows go before the prompt's first token, BOS included (InstructBLIP), and the
    # formatted prompt's marker is removed; False: each marker expands in place.
    rows_before_bos: ClassVar[bool] = False

    def check_prompt(self, prompt: str, n_images: int, raw: bool = False) -> None:
        """Refuse (PromptError) a user prompt / image count the layout cannot place; default: any."""

    def bind_prompt(self, text: str, prepared: list[PreparedImage]) -> str:
        """Hook for layouts whose projector reads the prompt: given the formatted prompt, set each
        image's `projector_inputs`; returns the text to expand and tokenize. Default: unchanged."""
        return text


class ImageLayout(PromptHooks, ABC):
    kind: ClassVar[str]

    def __init__(self, spec: LayoutSpec, preprocess: ImagePreprocessSpec, slot: ImageSlotSpec):
        self.spec, self.preprocess, self.slot = spec, preprocess, slot

    @abstractmethod
    def prepare(self, image: Image.Image) -> PreparedImage:
        ...

    def projected_shape(self, prepared: PreparedImage) -> tuple[int, ...]:
        """The projector's output shape for this image's encoder call (checked by the pipeline)."""
        return (prepared.tiles.shape[0], self.slot.tokens_per_image, self.slot.embedding_dim)

    def assemble(self, prepared: PreparedImage, tile_embeddings: np.ndarray) -> np.ndarray:
        """[T, tokens_per_image, D] -> [n_rows, D]; by default the tiles' rows in order."""
        return tile_embeddings.reshape(-1, tile_embeddings.shape[-1])


class KindRegistry:
    """Runtime implementations by manifest layout kind; `register` is the class decorator, and an
    unknown kind is a ManifestError naming the manifest field."""

    def __init__(self, field_name: str):
        self.field_name = field_name
        self._by_kind: dict[str, type] = {}

    def register(self, cls: type) -> type:
        self._by_kind[cls.kind] = cls
        return cls

    def __getitem__(self, kind: str) -> type:
        cls = self._by_kind.get(kind)
        if cls is None:
            raise ManifestError(f"{self.field_name}: {kind!r} has no runtime implementation here; upgrade mmedge")
        return cls


_LAYOUTS = KindRegistry("image.layout.kind")
register_layout = _LAYOUTS.register


def image_layout(preprocess: ImagePreprocessSpec, slot: ImageSlotSpec) -> ImageLayout:
    return _LAYOUTS[slot.layout.kind](slot.layout, preprocess, slot)
