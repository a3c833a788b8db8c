"""Qwen2-VL (`Qwen2VLForConditionalGeneration`), images only: a ViT over an image's own patch grid
(Conv3d patch embedding, 2-D rotary ids, full attention within the image), the PatchMerger
(2x2 patches -> one row) as projector, a Qwen2 backbone with M-RoPE.

The encoder takes two inputs, one image per call: the patches [N, C*T*P*P] and their (row,
column) rotary ids [N, 2], both computed by the `qwen2vl-patches` layout in numpy. Each merged
row takes an M-RoPE position (temporal, height, width) on the image's grid; the text after the
image resumes past the grid's largest position, as `get_rope_index` places it.
"""
from __future__ import annotations

import json
from pathlib import Path

from mmedge.errors import CheckpointError, UnsupportedConfigError
from mmedge.image_layouts import Qwen2VLPatches
from mmedge.manifest import ImagePreprocessSpec, ImageSlotSpec, PromptSpec

from ..checkpoint import load_pretrained, quiet_transformers
from ..hf_processors import image_only_qwen2vl_processor
from .base import Family, FamilyInfo, LoadedCheckpoint, register_family
from .common import prompt_spec, text_backbone, tile_spec

SUPPORTED_TEXT = ("qwen2_vl_text",)
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


def _load_processor(path: str):
    """transformers' Qwen2-VL processor without its video half (which needs torchvision)."""
    from transformers import AutoTokenizer, Qwen2VLImageProcessorPil

    tokenizer = AutoTokenizer.from_pretrained(path)
    return image_only_qwen2vl_processor()(image_processor=Qwen2VLImageProcessorPil.from_pretrained(path),
                                          tokenizer=tokenizer, chat_template=_chat_template(Path(path), tokenizer))


class _VisionEncoder:
    @staticmethod
    def build(visual):
        import torch
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
        from transformers.models.qwen2_vl.modeling_qwen2_vl import apply_rotary_pos_emb_vision, eager_attention_forward

        # The attention function the model itself is configured with, so the split path equals it.
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(visual.config._attn_implementation, eager_attention_forward)

        class Encoder(torch.nn.Module):
            """One image's patches [N, C*T*P*P] + rotary ids [N, 2] -> the blocks' output [N, embed_dim].

            The model's blocks split attention by cu_seqlens with a Python list, which export cannot
            trace; with one image per call there is one segment, so each block is written out here
            with the model's own modules and functions, and attention spans all N patches."""

            def __init__(self):
                super().__init__()
                self.visual = visual

            def forward(self, pixel_values, position_ids):
                hidden = visual.patch_embed(pixel_values)
                cos, sin = visual.rotary_pos_emb(hidden, position_ids)
                for block in visual.blocks:
                    hidden = hidden + self._attend(block.attn, block.norm1(hidden), cos, sin)
                    hidden = hidden + block.mlp(block.norm2(hidden))
                return hidden

            @staticmethod
            def _attend(attn, x, cos, sin):
                n = x.shape[0]
                q, k, v = attn.qkv(x).reshape(n, 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
                q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
                q, k, v = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))
                out = attention(attn, q, k, v, attention_mask=None, scaling=attn.scaling, dropout=0.0, is_causal=False)[0]
                return attn.proj(out.reshape(n, -1))

        return Encoder().eval()


def _layout(ckpt: LoadedCheckpoint) -> Qwen2VLPatches:
    ip = ckpt.processor.image_processor
    return Qwen2VLPatches(patch_size=int(ip.patch_size), temporal_patch_size=int(ip.temporal_patch_size),
                          merge_size=int(ip.merge_size), min_pixels=int(ip.size["shortest_edge"]),
                          max_pixels=int(ip.size["longest_edge"]), image_pad_token=ckpt.processor.image_token)


def _check_config(config, ip) -> None:
    """Refuse what the layout or the GGUF backbone would get wrong."""
    text, vision = config.text_config, config.vision_config
    if text.model_type not in SUPPORTED_TEXT:
        raise UnsupportedConfigError(f"text backbone {text.model_type!r} is not supported; supported: {SUPPORTED_TEXT}")
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


@register_family
class Qwen2VLFamily(Family):
    info = FamilyInfo(
        name="qwen2_vl",
        architectures=("Qwen2VLForConditionalGeneration",),
        modalities=("image",),
        projector="PatchMerger (2x2 patches -> one row), M-RoPE positions",
        encoders=("Qwen2-VL ViT (2-D rotary, one image per call)",),
        backbones=SUPPORTED_TEXT,
        # The encoder takes two inputs (patches, rotary ids): only the ONNX target compiles that.
        targets=("onnx", "gguf"),
        static_calibration=False,
    )

    def load(self, path: str) -> LoadedCheckpoint:
        quiet_transformers()
        from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

        # Refusals come from config.json and the processor files, before any weight is read.
        try:
            config = Qwen2VLConfig.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, TypeError) as e:
            raise CheckpointError(f"{path}: config.json is not a Qwen2-VL config transformers can read: {e}") from None
        processor = _load_processor(str(path))
        _check_config(config, processor.image_processor)
        model, config = load_pretrained(Qwen2VLForConditionalGeneration, path)
        return LoadedCheckpoint(model=model, processor=processor, config=config, path=str(path))

    # -- parts ---------------------------------------------------------------------------------
    def vision_encoder(self, ckpt: LoadedCheckpoint):
        return _VisionEncoder.build(ckpt.model.model.visual)

    def projector(self, ckpt: LoadedCheckpoint):
        return ckpt.model.model.visual.merger

    def encoder_example(self, ckpt: LoadedCheckpoint, preprocess: ImagePreprocessSpec) -> dict:
        import torch

        from mmedge.runtime.layouts.qwen2vl import rotary_ids

        s = _layout(ckpt)
        grid_h, grid_w = (side * s.merge_size for side in EXAMPLE_GRID)
        torch.manual_seed(0)
        return {"pixel_values": torch.randn(grid_h * grid_w, 3 * s.temporal_patch_size * s.patch_size**2),
                "position_ids": torch.from_numpy(rotary_ids(grid_h, grid_w, s.merge_size))}

    def reference_image_features(self, ckpt: LoadedCheckpoint, pixel_values, position_ids):
        """The model's own get_image_features for one image, its grid read off the rotary ids."""
        import torch

        grid = torch.tensor([[1, int(position_ids[:, 0].max()) + 1, int(position_ids[:, 1].max()) + 1]])
        return ckpt.model.model.get_image_features(pixel_values=pixel_values, image_grid_thw=grid).pooler_output[0]

    def text_backbone(self, ckpt: LoadedCheckpoint):
        return text_backbone(ckpt, ckpt.model.model.language_model, ckpt.model.lm_head, ckpt.config.text_config)

    # -- data for the runtime ---------------------------------------------------------------------
    def image_preprocess(self, ckpt: LoadedCheckpoint) -> ImagePreprocessSpec:
        # Filter and normalisation as data; the size is the resize unit (sizes are multiples of it).
        factor = _layout(ckpt).factor
        return tile_spec(ckpt.processor.image_processor, factor, factor)

    def image_slot(self, ckpt: LoadedCheckpoint) -> ImageSlotSpec:
        processor = ckpt.processor
        return ImageSlotSpec(
            marker=processor.image_token,
            marker_token_id=int(processor.image_token_id),
            # A variable-size image: one row per merge group; the layout counts the groups per image.
            tokens_per_image=1,
            embedding_dim=int(ckpt.config.vision_config.hidden_size),
            layout=_layout(ckpt),
        )

    def prompt(self, ckpt: LoadedCheckpoint) -> PromptSpec:
        return prompt_spec(ckpt)

    def reference_inputs(self, ckpt: LoadedCheckpoint, images: list, text: str) -> dict:
        return ckpt.processor(images=images or None, text=text, return_tensors="pt")

    def reference_encoder_inputs(self, ckpt: LoadedCheckpoint, image, marker: str) -> dict:
        """HF's patches for one image, and the rotary ids the vision model derives from its grid."""
        from transformers.vision_utils import get_vision_position_ids

        out = ckpt.processor(images=[image], text=marker, return_tensors="pt")
        return {"pixel_values": out["pixel_values"],
                "position_ids": get_vision_position_ids(out["image_grid_thw"], int(ckpt.processor.image_processor.merge_size))}
