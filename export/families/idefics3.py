"""Idefics3 and SmolVLM (`Idefics3ForConditionalGeneration`, `SmolVLMForConditionalGeneration`):
a SigLIP-style ViT over fixed-size tiles, a pixel-shuffle + linear connector, a Llama backbone.

An image becomes tiles plus a global view (`idefics3-tiles` layout); the encoder and connector run
on each tile, and the tiles' rows fill the image tokens the processor writes between the
`<fake_token_around_image>` / `<row_r_col_c>` / `<global-img>` tags.
"""
from __future__ import annotations

import json
from pathlib import Path

from mmedge.errors import CheckpointError, UnsupportedConfigError
from mmedge.image_layouts import Idefics3Tiles
from mmedge.manifest import ImagePreprocessSpec, ImageSlotSpec, PromptSpec

from ..checkpoint import load_pretrained, quiet_transformers
from .base import Family, FamilyInfo, LoadedCheckpoint, register_family
from .common import projected_rows, prompt_spec, text_backbone, tile_spec

SUPPORTED_TEXT = ("llama",)


def _model_class(architecture: str):
    import transformers

    return getattr(transformers, architecture)


def _load_processor(path: str, architecture: str):
    """The HF processor; for SmolVLM, its image half alone when the video half cannot load.

    SmolVLM's processor insists on its torchvision video processor. Its image path is Idefics3's
    (same tile expansion, same image processor maths), so the image processor and tokenizer are
    wrapped in an `Idefics3Processor` with the checkpoint's own image_seq_len and chat template.
    """
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer, Idefics3Processor

    try:
        return AutoProcessor.from_pretrained(path)
    except ImportError:
        if architecture != "SmolVLMForConditionalGeneration":
            raise
    config_path = Path(path) / "processor_config.json"
    try:
        image_seq_len = int(json.loads(config_path.read_text())["image_seq_len"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{config_path}: needed for image_seq_len and unreadable ({e})") from None
    template_path = Path(path) / "chat_template.jinja"
    tokenizer = AutoTokenizer.from_pretrained(path)
    template = template_path.read_text() if template_path.is_file() else getattr(tokenizer, "chat_template", None)
    return Idefics3Processor(image_processor=AutoImageProcessor.from_pretrained(path), tokenizer=tokenizer,
                             image_seq_len=image_seq_len, chat_template=template)


class _VisionEncoder:
    @staticmethod
    def build(vision_model, tile: int):
        import torch

        emb = vision_model.embeddings
        # The model computes a tile's position ids from a float arange + bucketize, which ONNX's
        # Range op counts differently (one boundary more or less); the ids of a full tile are a
        # constant, so they are taken from the model's own computation once, eagerly.
        captured = []
        hook = emb.position_embedding.register_forward_hook(lambda _m, args, _out: captured.append(args[0].clone()))
        side = tile // emb.patch_size
        try:
            with torch.no_grad():  # the embeddings alone: the ids are all that is wanted here
                emb(pixel_values=torch.zeros(1, 3, tile, tile), patch_attention_mask=torch.ones(1, side, side, dtype=torch.bool))
        finally:
            hook.remove()

        class Encoder(torch.nn.Module):
            """Tiles [T,3,S,S] -> the vision model's last hidden state (full tiles: no patch mask)."""

            def __init__(self):
                super().__init__()
                self.vision_model = vision_model
                self.register_buffer("position_ids", captured[0][:1], persistent=False)

            def forward(self, pixel_values):
                patches = emb.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
                hidden = patches + emb.position_embedding(self.position_ids)
                hidden = self.vision_model.encoder(inputs_embeds=hidden).last_hidden_state
                return self.vision_model.post_layernorm(hidden)

        return Encoder().eval()


class _Connector:
    @staticmethod
    def build(connector, side: int, width: int):
        import torch

        scale = int(connector.scale_factor)

        class Projector(torch.nn.Module):
            """The connector with its pixel shuffle on constant sizes (the model derives the grid
            side from the sequence length at run time, which Core ML's converter cannot trace)."""

            def __init__(self):
                super().__init__()
                self.connector = connector

            def forward(self, features):
                # -1 for the batch: a traced size would become an op Core ML cannot convert.
                x = features.reshape(-1, side, side // scale, width * scale).permute(0, 2, 1, 3)
                x = x.reshape(-1, side // scale, side // scale, width * scale * scale).permute(0, 2, 1, 3)
                x = x.reshape(-1, (side // scale) ** 2, width * scale * scale)
                return self.connector.modality_projection(x)

        return Projector().eval()


@register_family
class Idefics3Family(Family):
    info = FamilyInfo(
        name="idefics3",
        architectures=("Idefics3ForConditionalGeneration", "SmolVLMForConditionalGeneration"),
        modalities=("image",),
        projector="pixel shuffle + linear (tiles + global view)",
        encoders=("SigLIP (Idefics3 / SmolVLM vision)",),
        backbones=SUPPORTED_TEXT,
        targets=("onnx", "executorch", "coreml", "gguf"),
    )

    def load(self, path: str) -> LoadedCheckpoint:
        quiet_transformers()
        from ..checkpoint import architecture_of

        architecture = architecture_of(path)
        model, config = load_pretrained(_model_class(architecture), path)
        if config.text_config.model_type not in SUPPORTED_TEXT:
            raise UnsupportedConfigError(
                f"text backbone {config.text_config.model_type!r} is not supported; supported: {SUPPORTED_TEXT}")
        processor = _load_processor(str(path), architecture)
        ip = processor.image_processor
        if "longest_edge" not in ip.size or "longest_edge" not in ip.max_image_size:
            raise UnsupportedConfigError(
                f"image processor size {dict(ip.size)} / max_image_size {dict(ip.max_image_size)}: "
                "mmedge reproduces the longest_edge forms only")
        if not getattr(ip, "do_resize", True):
            raise UnsupportedConfigError("image processors with do_resize=False are not supported")
        if ip.max_image_size["longest_edge"] != config.vision_config.image_size:
            raise UnsupportedConfigError(
                f"tile size {ip.max_image_size['longest_edge']} differs from the vision model's image_size "
                f"{config.vision_config.image_size}; such tiles would need the patch mask path, not supported")
        return LoadedCheckpoint(model=model, processor=processor, config=config, path=str(path))

    # -- parts ---------------------------------------------------------------------------------
    def vision_encoder(self, ckpt: LoadedCheckpoint):
        tile = int(ckpt.processor.image_processor.max_image_size["longest_edge"])
        return _VisionEncoder.build(ckpt.model.model.vision_model, tile)

    def projector(self, ckpt: LoadedCheckpoint):
        side = ckpt.config.vision_config.image_size // ckpt.config.vision_config.patch_size
        return _Connector.build(ckpt.model.model.connector, side, ckpt.config.vision_config.hidden_size)

    def reference_image_features(self, ckpt: LoadedCheckpoint, pixel_values):
        out = ckpt.model.model.get_image_features(pixel_values=pixel_values[None])
        return out.pooler_output[0]

    def text_backbone(self, ckpt: LoadedCheckpoint):
        return text_backbone(ckpt, ckpt.model.model.text_model, ckpt.model.lm_head, ckpt.config.text_config)

    # -- data for the runtime ---------------------------------------------------------------------
    def image_preprocess(self, ckpt: LoadedCheckpoint) -> ImagePreprocessSpec:
        tile = int(ckpt.processor.image_processor.max_image_size["longest_edge"])
        return tile_spec(ckpt.processor.image_processor, tile, tile)

    def image_slot(self, ckpt: LoadedCheckpoint) -> ImageSlotSpec:
        processor, ip = ckpt.processor, ckpt.processor.image_processor
        tile = int(ip.max_image_size["longest_edge"])
        rows, width = projected_rows(self.vision_encoder(ckpt), self.projector(ckpt), tile, tile)
        if rows != processor.image_seq_len:
            raise UnsupportedConfigError(
                f"the processor writes {processor.image_seq_len} image tokens per tile but the connector gives {rows}; "
                "the checkpoint's processor_config.json and config.json disagree")
        return ImageSlotSpec(
            marker=processor.image_token,
            marker_token_id=int(processor.tokenizer.convert_tokens_to_ids(processor.image_token)),
            tokens_per_image=rows,
            embedding_dim=width,
            layout=Idefics3Tiles(
                longest_edge=int(ip.size["longest_edge"]),
                tile_size=tile,
                split=bool(getattr(ip, "do_image_splitting", True)),
                image_token=processor.image_token,
                fake_image_token=processor.fake_image_token,
                global_image_token=processor.global_image_tag,
            ),
        )

    def prompt(self, ckpt: LoadedCheckpoint) -> PromptSpec:
        return prompt_spec(ckpt)

    def reference_inputs(self, ckpt: LoadedCheckpoint, images: list, text: str) -> dict:
        return ckpt.processor(images=[images] if images else None, text=text, return_tensors="pt")
