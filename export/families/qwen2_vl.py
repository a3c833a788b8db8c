"""Qwen2-VL (`Qwen2VLForConditionalGeneration`) and Qwen2.5-VL (`Qwen2_5_VLForConditionalGeneration`),
images and videos: a ViT over an image's own patch grid (Conv3d patch embedding, 2-D rotary ids, full
attention within the image; Qwen2.5-VL: attention within windows except in its full-attention
blocks), the PatchMerger (2x2 patches -> one row) as projector, a Qwen2 backbone with M-RoPE.

The encoder takes two inputs, one image per call: the patches [N, C*T*P*P] and their (row,
column) rotary ids [N, 2], both computed by the `qwen2vl-patches` layout in numpy. Each merged
row takes an M-RoPE position (temporal, height, width) on the image's grid; the text after the
image resumes past the grid's largest position, as `get_rope_index` places it. Qwen2.5-VL's
encoder takes a third input, each patch's window number (the layout orders the patches window by
window, as the model does internally, and puts the rows back in image order after the projector).

Videos (`qwen2vl-frames` video layout) run through the same parts, one encoder call per group of
temporal_patch_size frames (the model attends within a group), with temporal M-RoPE offsets.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from mmedge.errors import CheckpointError, UnsupportedConfigError
from mmedge.image_layouts import Qwen2VLPatches
from mmedge.manifest import ImagePreprocessSpec, ImageSlotSpec, PromptSpec
from mmedge.video_spec import Qwen2VLFrames, VideoSlotSpec

from ..checkpoint import load_pretrained, quiet_transformers
from ..hf_processors import image_only_qwen2vl_processor
from ..video_processors import read_video_processor
from .base import Family, FamilyInfo, LoadedCheckpoint, register_family
from .common import prompt_spec, text_backbone, tile_spec

# The example image of the export: a 4x6 patch grid (6 merge groups), not square.
EXAMPLE_GRID = (4, 6)


def _chat_template(path: Path, tokenizer) -> str | None:
    """The checkpoint's chat template: chat_template.jinja, chat_template.json, or the tokenizer's."""
    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text()
    if (path / "chat_template.json").is_file():
        try:
            return json.loads((path / "chat_template.json").read_text())["chat_template"]
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{path / 'chat_template.json'}: unreadable ({e})") from None
    return getattr(tokenizer, "chat_template", None)


def _load_processor(path: str, processor_class: str):
    """transformers' Qwen2-VL / Qwen2.5-VL processor without its video half (which needs torchvision)."""
    from transformers import AutoTokenizer, Qwen2VLImageProcessorPil

    tokenizer = AutoTokenizer.from_pretrained(path)
    return image_only_qwen2vl_processor(processor_class)(
        image_processor=Qwen2VLImageProcessorPil.from_pretrained(path), tokenizer=tokenizer,
        chat_template=_chat_template(Path(path), tokenizer))


def _encoder_classes():
    import torch
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.qwen2_vl.modeling_qwen2_vl import apply_rotary_pos_emb_vision, eager_attention_forward

    class Encoder(torch.nn.Module):
        """One image's patches [N, C*T*P*P] + rotary ids [N, 2] -> the blocks' output [N, embed_dim].

        The model's blocks split attention by cu_seqlens with a Python list, which export cannot
        trace; with one image per call there is one segment, so each block is written out here
        with the model's own modules and functions, and attention spans all N patches."""

        def __init__(self, visual):
            super().__init__()
            self.visual = visual
            # The attention function the model itself is configured with, so the split path equals it.
            self.attention = ALL_ATTENTION_FUNCTIONS.get_interface(visual.config._attn_implementation,
                                                                   eager_attention_forward)

        def forward(self, pixel_values, position_ids):
            return self.blocks(pixel_values, position_ids, lambda _i: None)

        def blocks(self, pixel_values, position_ids, mask_for):
            hidden = self.visual.patch_embed(pixel_values)
            cos, sin = self.visual.rotary_pos_emb(hidden, position_ids)
            for i, block in enumerate(self.visual.blocks):
                hidden = hidden + self._attend(block.attn, block.norm1(hidden), cos, sin, mask_for(i))
                hidden = hidden + block.mlp(block.norm2(hidden))
            return hidden

        def _attend(self, attn, x, cos, sin, mask):
            n = x.shape[0]
            q, k, v = attn.qkv(x).reshape(n, 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
            q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
            q, k, v = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))
            out = self.attention(attn, q, k, v, attention_mask=mask, scaling=attn.scaling, dropout=0.0, is_causal=False)[0]
            return attn.proj(out.reshape(n, -1))

    class WindowedEncoder(Encoder):
        """Qwen2.5-VL: patches in window order + rotary ids + window numbers [N]. Blocks not in
        fullatt_block_indexes attend only within a window: an additive mask (0 inside the window,
        the float32 minimum elsewhere, whose exp is exactly 0) in place of the model's per-window split."""

        def forward(self, pixel_values, position_ids, window_ids):
            same = window_ids[:, None] == window_ids[None, :]
            mask = torch.zeros(same.shape, dtype=torch.float32).masked_fill(~same, torch.finfo(torch.float32).min)[None, None]
            full = set(self.visual.fullatt_block_indexes)
            return self.blocks(pixel_values, position_ids, lambda i: None if i in full else mask)

    return Encoder, WindowedEncoder


def _check_config(config, ip, supported_text: tuple[str, ...]) -> None:
    """Refuse what the layout or the GGUF backbone would get wrong."""
    text, vision = config.text_config, config.vision_config
    if text.model_type not in supported_text:
        raise UnsupportedConfigError(f"text backbone {text.model_type!r} is not supported; supported: {supported_text}")
    rope = getattr(text, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default" or not rope.get("mrope_section"):
        raise UnsupportedConfigError(f"rope_parameters {rope}: mmedge converts default M-RoPE with mrope_section only")
    if not getattr(ip, "do_resize", True):
        raise UnsupportedConfigError("image processors with do_resize=False are not supported (sizes would not be "
                                     "multiples of patch_size * merge_size)")
    if not {"shortest_edge", "longest_edge"} <= set(dict(ip.size)):
        raise UnsupportedConfigError(f"image processor size {dict(ip.size)}: expected min/max pixels "
                                     "(shortest_edge / longest_edge)")
    pairs = (("patch_size", ip.patch_size, vision.patch_size), ("merge_size", ip.merge_size, vision.spatial_merge_size),
             ("temporal_patch_size", ip.temporal_patch_size, vision.temporal_patch_size))
    for name, processor_value, model_value in pairs:
        if int(processor_value) != int(model_value):
            raise UnsupportedConfigError(f"the image processor's {name} {processor_value} differs from the vision "
                                         f"model's {model_value}; the checkpoint's files disagree")


def _layout(ckpt: LoadedCheckpoint, window_size: int | None) -> Qwen2VLPatches:
    ip = ckpt.processor.image_processor
    return Qwen2VLPatches(patch_size=int(ip.patch_size), temporal_patch_size=int(ip.temporal_patch_size),
                          merge_size=int(ip.merge_size), min_pixels=int(ip.size["shortest_edge"]),
                          max_pixels=int(ip.size["longest_edge"]), image_pad_token=ckpt.processor.image_token,
                          window_size=window_size)


@register_family
class Qwen2VLFamily(Family):
    info = FamilyInfo(
        name="qwen2_vl",
        architectures=("Qwen2VLForConditionalGeneration",),
        modalities=("image", "video"),
        projector="PatchMerger (2x2 patches -> one row), M-RoPE positions",
        encoders=("Qwen2-VL ViT (2-D rotary, one image per call)",),
        backbones=("qwen2_vl_text",),
        # The encoder takes several inputs (patches, rotary ids): only the ONNX target compiles that.
        targets=("onnx", "gguf"),
        static_calibration=False,
    )
    # transformers class names (config, model, processor) of this family.
    classes = ("Qwen2VLConfig", "Qwen2VLForConditionalGeneration", "Qwen2VLProcessor")

    def load(self, path: str) -> LoadedCheckpoint:
        quiet_transformers()
        import transformers

        config_cls, model_cls, processor_cls = self.classes
        # Refusals come from config.json and the processor files, before any weight is read.
        try:
            config = getattr(transformers, config_cls).from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, TypeError) as e:
            raise CheckpointError(f"{path}: config.json is not a {config_cls} transformers can read: {e}") from None
        processor = _load_processor(str(path), processor_cls)
        _check_config(config, processor.image_processor, self.info.backbones)
        self.check_vision(config.vision_config)
        self.video_slot(LoadedCheckpoint(model=None, processor=processor, config=config, path=str(path)))
        model, config = load_pretrained(getattr(transformers, model_cls), path)
        return LoadedCheckpoint(model=model, processor=processor, config=config, path=str(path))

    def check_vision(self, vision) -> None:
        """Family-specific vision options the conversion does not reproduce."""

    def window_size(self, ckpt: LoadedCheckpoint) -> int | None:
        return None

    def layout(self, ckpt: LoadedCheckpoint) -> Qwen2VLPatches:
        return _layout(ckpt, self.window_size(ckpt))

    # -- parts ---------------------------------------------------------------------------------
    def vision_encoder(self, ckpt: LoadedCheckpoint):
        encoder, windowed = _encoder_classes()
        return (encoder if self.window_size(ckpt) is None else windowed)(ckpt.model.model.visual).eval()

    def projector(self, ckpt: LoadedCheckpoint):
        return ckpt.model.model.visual.merger

    def encoder_example(self, ckpt: LoadedCheckpoint, preprocess: ImagePreprocessSpec) -> dict:
        """One image of EXAMPLE_GRID merge groups, prepared by the layout (random pixel values)."""
        import torch

        from mmedge.runtime.layouts.qwen2vl import patch_inputs

        s = self.layout(ckpt)
        inputs, _ = patch_inputs(s, *(side * s.merge_size for side in EXAMPLE_GRID))
        torch.manual_seed(0)
        pixels = torch.randn(len(inputs["position_ids"]), 3 * s.temporal_patch_size * s.patch_size**2)
        return {"pixel_values": pixels, **{k: torch.from_numpy(v) for k, v in inputs.items()}}

    def reference_image_features(self, ckpt: LoadedCheckpoint, pixel_values, position_ids, window_ids=None):
        """The model's own get_image_features for one image (its grid read off the rotary ids), its
        rows in the order the split parts give them (window order, for Qwen2.5-VL)."""
        import torch

        from mmedge.runtime.layouts.qwen2vl import patch_inputs

        grid_h, grid_w = int(position_ids[:, 0].max()) + 1, int(position_ids[:, 1].max()) + 1
        _, order = patch_inputs(self.layout(ckpt), grid_h, grid_w)
        if order is not None:  # back to the processor's patch order for the model
            unit = self.layout(ckpt).merge_size ** 2
            groups = pixel_values.reshape(len(order), unit, -1)
            pixel_values = torch.empty_like(groups).index_copy_(0, torch.from_numpy(order), groups).reshape(pixel_values.shape)
        grid = torch.tensor([[1, grid_h, grid_w]])
        rows = ckpt.model.model.get_image_features(pixel_values=pixel_values, image_grid_thw=grid).pooler_output[0]
        return rows if order is None else rows[torch.from_numpy(order)]

    def text_backbone(self, ckpt: LoadedCheckpoint):
        return text_backbone(ckpt, ckpt.model.model.language_model, ckpt.model.lm_head, ckpt.config.text_config)

    # -- data for the runtime ---------------------------------------------------------------------
    def image_preprocess(self, ckpt: LoadedCheckpoint) -> ImagePreprocessSpec:
        # Filter and normalisation as data; the size is the resize unit (sizes are multiples of it).
        factor = self.layout(ckpt).factor
        return tile_spec(ckpt.processor.image_processor, factor, factor)

    def image_slot(self, ckpt: LoadedCheckpoint) -> ImageSlotSpec:
        processor = ckpt.processor
        return ImageSlotSpec(
            marker=processor.image_token,
            marker_token_id=int(processor.image_token_id),
            # A variable-size image: one row per merge group; the layout counts the groups per image.
            tokens_per_image=1,
            embedding_dim=int(ckpt.model.model.visual.merger.mlp[-1].out_features),
            layout=self.layout(ckpt),
        )

    def tokens_per_second(self, ckpt: LoadedCheckpoint) -> float | None:
        """Temporal M-RoPE steps per second of video (Qwen2.5-VL); None: one step per frame group."""
        return None

    def video_slot(self, ckpt: LoadedCheckpoint) -> VideoSlotSpec:
        """Frames as the video processor (read as data) prepares them, through the image parts."""
        settings = read_video_processor(ckpt.path, "Qwen2VLVideoProcessor")
        s = self.layout(ckpt)
        found = (settings["patch_size"], settings["temporal_patch_size"], settings["merge_size"])
        if found != (s.patch_size, s.temporal_patch_size, s.merge_size):
            raise UnsupportedConfigError(f"{settings.source}: (patch_size, temporal_patch_size, merge_size) {found} differ "
                                         f"from the vision model's {(s.patch_size, s.temporal_patch_size, s.merge_size)}")
        if settings["cap_pixels_per_frame"]:
            raise UnsupportedConfigError(f"{settings.source}: cap_pixels_per_frame=true (a per-video pixel budget) is not "
                                         "converted; set it to false")
        size = settings["size"]
        if not size.get("shortest_edge") or not size.get("longest_edge"):
            raise UnsupportedConfigError(f"{settings.source}: size must give shortest_edge and longest_edge (min and max "
                                         f"pixels), found {size}")
        processor = ckpt.processor
        return VideoSlotSpec(
            marker=processor.video_token, marker_token_id=int(processor.video_token_id),
            layout=Qwen2VLFrames(min_pixels=int(size["shortest_edge"]), max_pixels=int(size["longest_edge"]),
                                 video_pad_token=processor.video_token, tokens_per_second=self.tokens_per_second(ckpt)),
            sampling=settings.sampling("qwen2vl", min_frames=int(settings["min_frames"]),
                                       max_frames=int(settings["max_frames"]), frame_multiple=s.temporal_patch_size),
            frames=settings.frames())

    def prompt(self, ckpt: LoadedCheckpoint) -> PromptSpec:
        return prompt_spec(ckpt)

    def reference_inputs(self, ckpt: LoadedCheckpoint, images: list, text: str) -> dict:
        return ckpt.processor(images=images or None, text=text, return_tensors="pt")

    def reference_encoder_inputs(self, ckpt: LoadedCheckpoint, image, marker: str) -> dict:
        """HF's patches for one image and the rotary ids the vision model derives from its grid
        (Qwen2.5-VL: reordered and numbered by the model's own get_vision_window_index)."""
        from transformers.vision_utils import get_vision_position_ids

        out = ckpt.processor(images=[image], text=marker, return_tensors="pt")
        merge = int(ckpt.processor.image_processor.merge_size)
        inputs = {"pixel_values": out["pixel_values"],
                  "position_ids": get_vision_position_ids(out["image_grid_thw"], merge)}
        if self.window_size(ckpt) is None:
            return inputs
        return _hf_window_inputs(inputs, out["image_grid_thw"], merge, ckpt.config.vision_config)


def _hf_window_inputs(inputs: dict, grid_thw, merge: int, vision) -> dict:
    """Qwen2.5-VL's window order and window numbers, from transformers' own get_vision_window_index."""
    import torch
    from transformers.vision_utils import get_vision_window_index

    index, cu = get_vision_window_index(grid_thw, merge, vision.window_size, vision.patch_size)
    unit = merge**2
    ordered = {k: v.reshape(len(index), unit, -1)[index].reshape(v.shape) for k, v in inputs.items()}  # torch tensors
    windows = torch.repeat_interleave(torch.arange(len(cu) - 1), (cu[1:] - cu[:-1]).long())
    return {**ordered, "window_ids": windows}


@register_family
class Qwen25VLFamily(Qwen2VLFamily):
    info = replace(
        Qwen2VLFamily.info,
        name="qwen2_5_vl",
        architectures=("Qwen2_5_VLForConditionalGeneration",),
        projector="PatchMerger (2x2 patches -> one row, RMSNorm), M-RoPE positions",
        encoders=("Qwen2.5-VL ViT (2-D rotary, window attention + full-attention blocks, one image per call)",),
        backbones=("qwen2_5_vl_text",),
    )
    classes = ("Qwen2_5_VLConfig", "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor")

    def check_vision(self, vision) -> None:
        factor = vision.patch_size * vision.spatial_merge_size
        if vision.window_size % factor:
            raise UnsupportedConfigError(f"vision window_size {vision.window_size} is not a multiple of patch_size * "
                                         f"spatial_merge_size ({factor}); such windows are not reproduced")

    def window_size(self, ckpt: LoadedCheckpoint) -> int | None:
        return int(ckpt.config.vision_config.window_size)

    def tokens_per_second(self, ckpt: LoadedCheckpoint) -> float | None:
        return float(ckpt.config.vision_config.tokens_per_second)
