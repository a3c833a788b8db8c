"""LLaVA (`LlavaForConditionalGeneration`): CLIP or SigLIP ViT, two-layer MLP projector, Llama or
Qwen2 backbone. Images enter as one `<image>` marker that expands to `tokens_per_image` rows."""
from __future__ import annotations

from typing import ClassVar

from mmedge.errors import CheckpointError, UnsupportedConfigError
from mmedge.manifest import ImagePreprocessSpec, ImageSlotSpec, PromptSpec

from ..checkpoint import load_pretrained, quiet_transformers
from .base import Family, FamilyInfo, LoadedCheckpoint, register_family
from .common import image_spec_from_processor as _image_spec_from_processor
from .common import projected_rows, prompt_spec, text_backbone

# Image processors whose preprocessing mmedge reproduces for LLaVA.
SUPPORTED_IMAGE_PROCESSORS = ("CLIPImageProcessor", "SiglipImageProcessor")
SUPPORTED_VISION = ("clip_vision_model", "siglip_vision_model")
SUPPORTED_TEXT = ("llama", "qwen2")


class LlavaVisionEncoder:
    """Built lazily so that torch is imported only on export."""

    @staticmethod
    def build(vision_tower, feature_layer, strategy):
        import torch

        class _Encoder(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.vision_tower = vision_tower
                self.layers = [feature_layer] if isinstance(feature_layer, int) else list(feature_layer)
                self.drop_cls = strategy == "default"

            def forward(self, pixel_values):
                out = self.vision_tower(pixel_values, output_hidden_states=True)
                picked = [out.hidden_states[i] for i in self.layers]
                if self.drop_cls:
                    picked = [h[:, 1:] for h in picked]
                return picked[0] if len(picked) == 1 else torch.cat(picked, dim=-1)

        return _Encoder().eval()


@register_family
class LlavaFamily(Family):
    info = FamilyInfo(
        name="llava",
        architectures=("LlavaForConditionalGeneration",),
        modalities=("image",),
        projector="mlp (linear-gelu-linear)",
        encoders=("CLIP", "SigLIP"),
        backbones=SUPPORTED_TEXT,
        targets=("onnx", "executorch", "coreml", "gguf"),
    )

    # The transformers class the checkpoint loads into, and the image processors whose output the
    # family's runtime layout reproduces (their names without the Fast/Pil backend suffix).
    model_class: ClassVar[str] = "LlavaForConditionalGeneration"
    image_processors: ClassVar[tuple[str, ...]] = SUPPORTED_IMAGE_PROCESSORS

    def load(self, path: str) -> LoadedCheckpoint:
        quiet_transformers()
        import transformers
        from transformers import AutoConfig

        # Config and processor are checked before the weights are read (seconds, not minutes).
        try:
            config = AutoConfig.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise CheckpointError(f"{path}: transformers could not read config.json: {e}") from None
        self.check_config(config)
        processor = self.load_processor(path)
        self.check_processor(processor, config)
        self.video_slot(LoadedCheckpoint(model=None, processor=processor, config=config, path=str(path)))
        model, config = load_pretrained(getattr(transformers, self.model_class), path)
        return LoadedCheckpoint(model=model, processor=processor, config=config, path=str(path))

    def load_processor(self, path: str):
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(path)

    def check_config(self, config) -> None:
        """Refuse, with UnsupportedConfigError, a config whose options this family does not convert."""
        vision_type = config.vision_config.model_type
        text_type = config.text_config.model_type
        if vision_type not in SUPPORTED_VISION:
            raise UnsupportedConfigError(f"vision tower {vision_type!r} is not supported; supported: {SUPPORTED_VISION}")
        if text_type not in SUPPORTED_TEXT:
            raise UnsupportedConfigError(f"text backbone {text_type!r} is not supported; supported: {SUPPORTED_TEXT}")
        if config.vision_feature_select_strategy not in ("default", "full"):
            raise UnsupportedConfigError(
                f"vision_feature_select_strategy {config.vision_feature_select_strategy!r}: expected 'default' or 'full'"
            )

    def check_processor(self, processor, config) -> None:
        _image_spec_from_processor(processor.image_processor, self.image_processors)

    # -- parts ---------------------------------------------------------------------------------
    def vision_encoder(self, ckpt: LoadedCheckpoint):
        c = ckpt.config
        return LlavaVisionEncoder.build(ckpt.model.model.vision_tower, c.vision_feature_layer, c.vision_feature_select_strategy)

    def projector(self, ckpt: LoadedCheckpoint):
        return ckpt.model.model.multi_modal_projector.eval()

    def reference_image_features(self, ckpt: LoadedCheckpoint, pixel_values):
        import torch

        c = ckpt.config
        out = ckpt.model.model.get_image_features(
            pixel_values=pixel_values,
            vision_feature_layer=c.vision_feature_layer,
            vision_feature_select_strategy=c.vision_feature_select_strategy,
        )
        feats = getattr(out, "pooler_output", out)
        if isinstance(feats, (list, tuple)):
            feats = torch.stack(list(feats))
        return feats

    def text_backbone(self, ckpt: LoadedCheckpoint):
        model = ckpt.model
        return text_backbone(ckpt, model.model.language_model, model.lm_head, ckpt.config.text_config)

    # -- data for the runtime ---------------------------------------------------------------------
    def image_preprocess(self, ckpt: LoadedCheckpoint) -> ImagePreprocessSpec:
        return _image_spec_from_processor(ckpt.processor.image_processor, self.image_processors)

    def image_slot(self, ckpt: LoadedCheckpoint) -> ImageSlotSpec:
        h, w = self.image_preprocess(ckpt).output_hw()
        rows, width = projected_rows(self.vision_encoder(ckpt), self.projector(ckpt), h, w)
        marker = ckpt.processor.image_token
        return ImageSlotSpec(marker=marker, marker_token_id=int(ckpt.processor.tokenizer.convert_tokens_to_ids(marker)),
                             tokens_per_image=rows, embedding_dim=width)

    def prompt(self, ckpt: LoadedCheckpoint) -> PromptSpec:
        return prompt_spec(ckpt)

    def reference_inputs(self, ckpt: LoadedCheckpoint, images: list, text: str) -> dict:
        return ckpt.processor(images=images or None, text=text, return_tensors="pt")
