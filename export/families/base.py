"""What a model family declares, and the registry that finds one for a checkpoint.

A family knows how one checkpoint architecture splits into parts (encoder, projector, LLM
backbone), how its images are preprocessed (as data), and how its prompt places images.
Adding a family is adding one file with a `@register_family` class and its parity test.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from mmedge.errors import UnsupportedArchitectureError

if TYPE_CHECKING:  # torch stays out of import time
    import torch

    from mmedge.manifest import ImagePreprocessSpec, ImageSlotSpec, PromptSpec
    from mmedge.video_spec import VideoSlotSpec

    from ..gguf.backbone import TextBackbone


@dataclass(frozen=True)
class FamilyInfo:
    name: str
    architectures: tuple[str, ...]
    modalities: tuple[str, ...]
    projector: str
    encoders: tuple[str, ...]
    backbones: tuple[str, ...]
    targets: tuple[str, ...]  # what its parts compile to; export refuses any other --target up front
    # Static int8 calibration feeds the encoder one input; families with several inputs say False.
    static_calibration: bool = True


@dataclass
class LoadedCheckpoint:
    """A checkpoint loaded into PyTorch with its processor, ready to be split."""

    model: Any  # a transformers PreTrainedModel in eval mode
    processor: Any  # the HF processor (tokenizer + image processor)
    config: Any
    path: str


class Family(ABC):
    info: ClassVar[FamilyInfo]
    # The verification cases (export/verify_inputs.py); a family that takes one image per prompt
    # (InstructBLIP) gives its own.
    verify_cases: ClassVar[tuple] = ()

    @abstractmethod
    def load(self, path: str) -> LoadedCheckpoint:
        """Load the checkpoint folder (safetensors only) in fp32 eval mode."""

    @property
    def modality(self) -> str:
        """What the encoder takes: "image" or "audio" (picks the manifest section and the part roles)."""
        return self.info.modalities[0]

    @abstractmethod
    def vision_encoder(self, ckpt: LoadedCheckpoint) -> "torch.nn.Module":
        """pixel_values [B,3,H,W] -> the features the projector takes, exactly the model's own path."""

    def encoder(self, ckpt: LoadedCheckpoint) -> "torch.nn.Module":
        """The encoder of the family's modality (images: `vision_encoder`)."""
        return self.vision_encoder(ckpt)

    def reference_features(self, ckpt: LoadedCheckpoint, **inputs) -> "torch.Tensor":
        """The model's own feature function on the encoder's inputs (images: `reference_image_features`)."""
        return self.reference_image_features(ckpt, **inputs)

    def media_sections(self, ckpt: LoadedCheckpoint) -> dict:
        """The manifest fields of the modality: an image family's preprocess and image slot (and its
        video section, for families whose HF processor takes videos)."""
        video = self.video_slot(ckpt)
        return {"image_preprocess": self.image_preprocess(ckpt), "image": self.image_slot(ckpt),
                **({"video": video} if video is not None else {})}

    def video_slot(self, ckpt: LoadedCheckpoint) -> "VideoSlotSpec | None":
        """How videos run through the image parts (None: the family takes no videos). Reads only the
        config and processor files, so `load` calls it to refuse bad video settings before the weights."""
        return None

    def media_slot(self, ckpt: LoadedCheckpoint):
        """The slot the prompt's markers refer to (attention mode, marker token)."""
        return self.image_slot(ckpt)

    @abstractmethod
    def projector(self, ckpt: LoadedCheckpoint) -> "torch.nn.Module":
        """encoder features -> embeddings in the LLM's input space."""

    @abstractmethod
    def reference_image_features(self, ckpt: LoadedCheckpoint, pixel_values: "torch.Tensor") -> "torch.Tensor":
        """The model's own image-feature function, to prove the split modules equal it."""

    @abstractmethod
    def text_backbone(self, ckpt: LoadedCheckpoint) -> "TextBackbone":
        """The LLM's config, weights and tokenizer, for the GGUF writer."""

    @abstractmethod
    def image_preprocess(self, ckpt: LoadedCheckpoint) -> "ImagePreprocessSpec":
        ...

    @abstractmethod
    def image_slot(self, ckpt: LoadedCheckpoint) -> "ImageSlotSpec":
        ...

    @abstractmethod
    def prompt(self, ckpt: LoadedCheckpoint) -> "PromptSpec":
        ...

    @abstractmethod
    def reference_inputs(self, ckpt: LoadedCheckpoint, images: list, text: str) -> dict:
        """The HF processor's model inputs for `text` (already chat-formatted) and PIL images."""

    def reference_text_logits(self, ckpt: LoadedCheckpoint, input_ids: "torch.Tensor") -> "torch.Tensor":
        """The model's causal logits [1, n, vocab] on text alone (what the GGUF's teacher-forced check compares)."""
        return ckpt.model(input_ids=input_ids).logits

    def encoder_example(self, ckpt: LoadedCheckpoint, preprocess: "ImagePreprocessSpec") -> dict:
        """Example encoder inputs by name, for export (dim 0 of each >= 2, exported as dynamic):
        by default a batch of 2 random tiles of the preprocess size."""
        import torch

        h, w = preprocess.output_hw()
        torch.manual_seed(0)
        return {"pixel_values": torch.randn(2, 3, h, w)}

    def reference_encoder_inputs(self, ckpt: LoadedCheckpoint, image, marker: str) -> dict:
        """The HF processor's encoder inputs for one image, by name (one encoder call, as the runtime makes)."""
        return {"pixel_values": self.reference_pixel_values(ckpt, [image], marker)}

    def projector_example(self, ckpt: LoadedCheckpoint, features: "torch.Tensor") -> dict:
        """Example projector inputs besides the features, by name (dim 0 = the features' batch);
        by default none. InstructBLIP's Q-Former also reads the prompt's ids."""
        return {}

    def reference_projector_inputs(self, ckpt: LoadedCheckpoint, image, marker: str) -> dict:
        """The HF processor's projector inputs besides the features for one image's verification
        call, by name; by default none."""
        return {}

    def reference_pixel_values(self, ckpt: LoadedCheckpoint, images: list, marker: str) -> "torch.Tensor":
        """The HF processor's encoder inputs for `images`, flattened to [tiles, 3, H, W] in prompt order."""
        pixels = self.reference_inputs(ckpt, images, marker * len(images))["pixel_values"]
        return pixels.reshape(-1, *pixels.shape[-3:])


_FAMILIES: dict[str, type[Family]] = {}
_BY_ARCHITECTURE: dict[str, str] = {}


def register_family(cls: type[Family]) -> type[Family]:
    info = cls.info
    if info.name in _FAMILIES:
        raise ValueError(f"family {info.name!r} registered twice")
    for arch in info.architectures:
        if arch in _BY_ARCHITECTURE:
            raise ValueError(f"architecture {arch!r} claimed by {_BY_ARCHITECTURE[arch]!r} and {info.name!r}")
        _BY_ARCHITECTURE[arch] = info.name
    _FAMILIES[info.name] = cls
    return cls


def registered_families() -> dict[str, type[Family]]:
    return dict(_FAMILIES)


def family_for_architecture(architecture: str) -> Family:
    name = _BY_ARCHITECTURE.get(architecture)
    if name is None:
        known = ", ".join(sorted(_BY_ARCHITECTURE)) or "(none)"
        raise UnsupportedArchitectureError(
            f"architecture {architecture!r} is not supported; registered architectures: {known}. "
            "Run `mmedge families` to see what each family covers."
        )
    return _FAMILIES[name]()
