"""LLaVA-NeXT (`LlavaNextForConditionalGeneration`) and LLaVA-OneVision
(`LlavaOnevisionForConditionalGeneration`): LLaVA's encoder and projector run per tile of an
"anyres" grid; the runtime's `anyres` layout reassembles the tiles' rows (unpad, OneVision's
pooling, `image_newline`) in numpy, so the exported parts stay per-tile and batchable.

OneVision's videos go through the same per-tile parts (`pooled-frames` video layout: each frame one
tile, its rows pooled, one image_newline after the last frame). Its multi-image mode (images given
as a nested list, one padded view each) is not converted; a flat list of images, which is what
mmedge's runtime and the HF processor called with `images=[...]` use, gets anyres tiling for every image.
"""
from __future__ import annotations

import re
import sys
from dataclasses import replace

from mmedge.errors import UnsupportedConfigError
from mmedge.image_layouts import AnyRes
from mmedge.manifest import ImagePreprocessSpec, ImageSlotSpec
from mmedge.video_spec import PooledFrames, VideoSlotSpec

from ..video_processors import read_video_processor
from .base import FamilyInfo, LoadedCheckpoint, register_family
from .llava import SUPPORTED_TEXT, LlavaFamily

# Vision towers whose hidden states start with a CLS token (dropped by the "default" strategy).
_HAS_CLS = {"clip_vision_model": True, "siglip_vision_model": False}


def _tile_size(ip) -> int:
    """The processor's tile side: crop height, else size height, else shortest edge (as transformers picks it)."""
    crop, size = getattr(ip, "crop_size", None) or {}, dict(ip.size)
    return int(crop.get("height") or size.get("height") or size["shortest_edge"])


class AnyResFamily(LlavaFamily):
    """What LLaVA-NeXT and OneVision share; each registers a subclass."""

    def max_num_patches(self, config) -> int | None:
        """OneVision pools grids over this many tiles' worth; LLaVA-NeXT never pools."""
        return None

    def check_config(self, config) -> None:
        super().check_config(config)
        vision = config.vision_config
        # pack_image_features reshapes each tile's rows into a (image_size / patch_size)^2 square.
        wanted = "default" if _HAS_CLS[vision.model_type] else "full"
        if config.vision_feature_select_strategy != wanted:
            raise UnsupportedConfigError(
                f"vision_feature_select_strategy {config.vision_feature_select_strategy!r} with a {vision.model_type}: "
                f"expected {wanted!r}, so that each tile gives a square grid of patch features"
            )
        if not config.image_grid_pinpoints:
            raise UnsupportedConfigError("image_grid_pinpoints is empty: expected [height, width] pairs")
        tile = vision.image_size
        for pair in config.image_grid_pinpoints:
            if len(pair) != 2 or pair[0] % tile or pair[1] % tile:
                raise UnsupportedConfigError(f"image_grid_pinpoints entry {pair}: expected [height, width] in whole "
                                             f"{tile}-pixel tiles (vision_config.image_size)")
        self.max_num_patches(config)

    def check_processor(self, processor, config) -> None:
        super().check_processor(processor, config)
        ip, tile = processor.image_processor, config.vision_config.image_size
        if _tile_size(ip) != tile:
            raise UnsupportedConfigError(f"the image processor cuts {_tile_size(ip)}-pixel tiles, the vision tower "
                                         f"takes {tile}: expected equal")
        size = dict(ip.size)
        # Each tile is resized to `size` and center-cropped again: mmedge supports only the case where
        # that leaves the tile as is (every released checkpoint).
        if size.get("shortest_edge", tile) != tile or size.get("height", tile) != tile or size.get("width", tile) != tile:
            raise UnsupportedConfigError(f"image processor size {size}: expected the tile size {tile}")
        if [list(p) for p in ip.image_grid_pinpoints] != [list(p) for p in config.image_grid_pinpoints]:
            raise UnsupportedConfigError("the image processor's image_grid_pinpoints differ from the model config's; "
                                         "the token count would not match the features")

    # -- parts ---------------------------------------------------------------------------------
    def reference_image_features(self, ckpt: LoadedCheckpoint, pixel_values):
        """The model's own get_image_features up to (not including) packing, per tile.

        get_image_features takes whole images (their tile count comes from `image_sizes`), so the
        tiles are padded with zero tiles to a whole number of one-tile-sized images; tiles do not
        interact in the vision tower, and the padding is dropped again."""
        import torch

        c, model = ckpt.config, ckpt.model.model
        tile = c.vision_config.image_size
        per_image = sys.modules[type(model).__module__].image_size_to_num_patches(
            [tile, tile], c.image_grid_pinpoints, tile)
        n = pixel_values.shape[0]
        k = -(-n // per_image)
        padded = torch.cat([pixel_values, pixel_values.new_zeros(k * per_image - n, *pixel_values.shape[1:])])
        captured = []

        def keep_tiles(image_features, *args, **kwargs):
            captured.extend(image_features)
            return list(image_features), None

        original = model.pack_image_features
        model.pack_image_features = keep_tiles
        try:
            model.get_image_features(pixel_values=padded, image_sizes=torch.tensor([[tile, tile]] * k),
                                     vision_feature_layer=c.vision_feature_layer,
                                     vision_feature_select_strategy=c.vision_feature_select_strategy)
        finally:
            model.pack_image_features = original
        return torch.cat(captured)[:n]

    # -- data for the runtime ---------------------------------------------------------------------
    def image_preprocess(self, ckpt: LoadedCheckpoint) -> ImagePreprocessSpec:
        """Per tile: already cut at the tile size, so only rescale and normalize apply."""
        spec = super().image_preprocess(ckpt)
        tile = ckpt.config.vision_config.image_size
        return replace(spec, resize_mode="exact", size={"height": tile, "width": tile}, crop_size=None)

    def image_slot(self, ckpt: LoadedCheckpoint) -> ImageSlotSpec:
        slot = super().image_slot(ckpt)
        c = ckpt.config
        side = c.vision_config.image_size // c.vision_config.patch_size
        if side * side != slot.tokens_per_image:
            raise UnsupportedConfigError(f"each tile gives {slot.tokens_per_image} rows, expected {side}x{side}")
        newline = ckpt.model.model.image_newline.detach().float()
        layout = AnyRes(tile_size=c.vision_config.image_size,
                        grid_pinpoints=tuple((int(h), int(w)) for h, w in c.image_grid_pinpoints),
                        feature_side=side,
                        # float32 values written as JSON doubles read back bit-exact.
                        image_newline=tuple(float(v) for v in newline.tolist()),
                        max_num_patches=self.max_num_patches(c))
        return replace(slot, layout=layout)

    def reference_pixel_values(self, ckpt: LoadedCheckpoint, images: list, marker: str):
        """HF pads every image to the batch's largest tile count; keep each image's own tiles."""
        import torch

        c, model = ckpt.config, ckpt.model.model
        inputs = self.reference_inputs(ckpt, images, marker * len(images))
        count = sys.modules[type(model).__module__].image_size_to_num_patches
        tile = c.vision_config.image_size
        return torch.cat([pixels[:count(size, c.image_grid_pinpoints, tile)]
                          for pixels, size in zip(inputs["pixel_values"], inputs["image_sizes"])])


@register_family
class LlavaNextFamily(AnyResFamily):
    info = FamilyInfo(
        name="llava_next",
        architectures=("LlavaNextForConditionalGeneration",),
        modalities=("image",),
        projector="mlp (linear-gelu-linear), anyres tiles + image_newline",
        encoders=("CLIP", "SigLIP"),
        backbones=SUPPORTED_TEXT,
        targets=("onnx", "executorch", "coreml", "gguf"),
    )
    model_class = "LlavaNextForConditionalGeneration"
    image_processors = ("LlavaNextImageProcessor",)

    def check_processor(self, processor, config) -> None:
        super().check_processor(processor, config)
        # The processor counts image tokens from its own patch size and extra-token count.
        vision = config.vision_config
        found = (processor.patch_size, processor.num_additional_image_tokens)
        if found != (vision.patch_size, int(_HAS_CLS[vision.model_type])):
            raise UnsupportedConfigError(f"the processor's (patch_size, num_additional_image_tokens) {found} do not match "
                                         f"the vision tower's ({vision.patch_size}, {int(_HAS_CLS[vision.model_type])})")


@register_family
class LlavaOnevisionFamily(AnyResFamily):
    info = FamilyInfo(
        name="llava_onevision",
        architectures=("LlavaOnevisionForConditionalGeneration",),
        modalities=("image", "video"),
        projector="mlp (linear-gelu-linear), anyres tiles pooled to anyres_max_N + image_newline",
        encoders=("CLIP", "SigLIP"),
        backbones=SUPPORTED_TEXT,
        targets=("onnx", "executorch", "coreml", "gguf"),
    )
    model_class = "LlavaOnevisionForConditionalGeneration"
    image_processors = ("LlavaOnevisionImageProcessor",)

    def max_num_patches(self, config) -> int | None:
        found = re.fullmatch(r"anyres_max_([1-9][0-9]*)", str(config.vision_aspect_ratio))
        if found is None:
            raise UnsupportedConfigError(f"vision_aspect_ratio {config.vision_aspect_ratio!r}: expected 'anyres_max_N'")
        return int(found.group(1))

    def video_slot(self, ckpt: LoadedCheckpoint) -> VideoSlotSpec:
        """Frames as the video processor (read as data) prepares them, through the tile parts."""
        c, processor = ckpt.config, ckpt.processor
        settings = read_video_processor(ckpt.path, "LlavaOnevisionVideoProcessor")
        tile = c.vision_config.image_size
        size = settings["size"]
        if (size.get("height"), size.get("width")) != (tile, tile):
            raise UnsupportedConfigError(f"{settings.source}: video frames are resized to {size}, but the vision tower takes "
                                         f"{tile}x{tile} tiles; set size to {{'height': {tile}, 'width': {tile}}}")
        return VideoSlotSpec(marker=processor.video_token, marker_token_id=int(c.video_token_id),
                             layout=PooledFrames(frame_size=tile, feature_side=tile // c.vision_config.patch_size),
                             sampling=settings.sampling("uniform"), frames=settings.frames())

    def load_processor(self, path: str):
        # transformers' own class needs torchvision for its video processor; images do not use it.
        from ..hf_processors import image_only_onevision_processor

        return image_only_onevision_processor().from_pretrained(path)

    def check_processor(self, processor, config) -> None:
        super().check_processor(processor, config)
        vision = config.vision_config
        side = vision.image_size // vision.patch_size
        if processor.num_image_tokens != side * side + int(_HAS_CLS[vision.model_type]):
            raise UnsupportedConfigError(f"the processor's num_image_tokens {processor.num_image_tokens} does not match the "
                                         f"vision tower's {side}x{side} patches")
        if processor.vision_aspect_ratio != config.vision_aspect_ratio:
            raise UnsupportedConfigError(f"the processor's vision_aspect_ratio {processor.vision_aspect_ratio!r} differs "
                                         f"from the model's {config.vision_aspect_ratio!r}")
