"""Pieces every family shares: the preprocess spec read from an HF image processor, the prompt
spec from its tokenizer, the text backbone handed to the GGUF writer, common encoder wrappers and
config checks. (Imported by the families; registers nothing.)"""
from __future__ import annotations

from pathlib import Path

from mmedge.errors import UnsupportedConfigError
from mmedge.manifest import ImagePreprocessSpec, PromptSpec

from .base import LoadedCheckpoint

RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
# Single-view image processors whose preprocessing mmedge reproduces.
SINGLE_VIEW_PROCESSORS = ("CLIPImageProcessor", "SiglipImageProcessor", "Gemma3ImageProcessor")


def resample_name(image_processor) -> str:
    resample = image_processor.resample if isinstance(image_processor.resample, int) else int(image_processor.resample)
    if resample not in RESAMPLE_NAMES:
        raise UnsupportedConfigError(f"image processor resample={resample!r} is not a PIL filter mmedge reproduces")
    return RESAMPLE_NAMES[resample]


def image_spec_from_processor(ip, supported: tuple[str, ...] = SINGLE_VIEW_PROCESSORS) -> ImagePreprocessSpec:
    """One view per image: resize (shortest edge or exact), optional center crop, rescale, normalize."""
    name = type(ip).__name__.removesuffix("Fast").removesuffix("Pil")
    if name not in supported:
        raise UnsupportedConfigError(
            f"image processor {type(ip).__name__} is not reproduced by mmedge's runtime; supported: {supported}"
        )
    if getattr(ip, "do_pan_and_scan", None):
        raise UnsupportedConfigError("Gemma 3 pan-and-scan (do_pan_and_scan=True) is not supported; "
                                     "set it to false in preprocessor_config.json (one view per image)")
    size = dict(ip.size)
    if not getattr(ip, "do_resize", True):
        raise UnsupportedConfigError("image processors with do_resize=False are not supported: the encoder needs a fixed size")
    if "shortest_edge" in size:
        mode, size = "shortest_edge", {"shortest_edge": int(size["shortest_edge"])}
    elif "height" in size and "width" in size:
        mode, size = "exact", {"height": int(size["height"]), "width": int(size["width"])}
    else:
        raise UnsupportedConfigError(f"image processor size {size} is not supported (need shortest_edge or height+width)")
    crop = None
    if getattr(ip, "do_center_crop", False):
        crop = {"height": int(ip.crop_size["height"]), "width": int(ip.crop_size["width"])}
    return ImagePreprocessSpec(resize_mode=mode, size=size, crop_size=crop, **_pixel_steps(ip))


def tile_spec(image_processor, height: int, width: int) -> ImagePreprocessSpec:
    """Encoder inputs of a fixed size (tiles, views) normalised as `image_processor` does."""
    return ImagePreprocessSpec(resize_mode="exact", size={"height": int(height), "width": int(width)}, crop_size=None,
                               **_pixel_steps(image_processor))


def _pixel_steps(ip) -> dict:
    """The filter, rescale, normalisation and RGB conversion an HF image processor applies."""
    normalize = getattr(ip, "do_normalize", True)
    return dict(
        resample=resample_name(ip),
        rescale_factor=float(ip.rescale_factor) if getattr(ip, "do_rescale", True) else None,
        image_mean=[float(v) for v in ip.image_mean] if normalize else None,
        image_std=[float(v) for v in ip.image_std] if normalize else None,
        convert_rgb=bool(getattr(ip, "do_convert_rgb", True) is not False),
    )


def prompt_flags(ckpt: LoadedCheckpoint) -> tuple[bool, bool]:
    """(the tokenizer adds BOS, the runtime must prepend one space: SentencePiece with HF's 'first' scheme)."""
    from ..gguf.vocab import metaspace_prepend_scheme

    tok = ckpt.processor.tokenizer
    probe = tok("a").input_ids
    add_bos = tok.bos_token_id is not None and len(probe) > 0 and probe[0] == tok.bos_token_id
    spm = (Path(ckpt.path) / "tokenizer.model").is_file()
    return add_bos, spm and metaspace_prepend_scheme(tok) == "first"


def prompt_spec(ckpt: LoadedCheckpoint) -> PromptSpec:
    """Chat template, BOS and the SentencePiece leading space, as the HF tokenizer behaves."""
    add_bos, prepend_space = prompt_flags(ckpt)
    return PromptSpec(chat_template=getattr(ckpt.processor, "chat_template", None), add_bos=add_bos,
                      prepend_space=prepend_space)


def text_backbone(ckpt: LoadedCheckpoint, language_model, lm_head, text_config):
    """The LLM of a VLM (a `*Model` with embed_tokens/layers/norm plus the lm_head) for the GGUF writer."""
    from ..gguf.backbone import TextBackbone

    tensors = {f"model.{k}": v for k, v in language_model.state_dict().items()}
    tied = bool(getattr(ckpt.config, "tie_word_embeddings", False) or text_config.tie_word_embeddings)
    if not tied:
        tensors["lm_head.weight"] = lm_head.weight
    tokenizer = ckpt.processor.tokenizer
    return TextBackbone(
        model_type=text_config.model_type,
        config=text_config,
        tensors=tensors,
        tie_word_embeddings=tied,
        tokenizer=tokenizer,
        tokenizer_dir=ckpt.path,
        # The tokenizer's own template, else the processor's, so that the GGUF carries one either way.
        chat_template=getattr(tokenizer, "chat_template", None) or getattr(ckpt.processor, "chat_template", None),
        name=Path(ckpt.path).name,
    )


def projected_rows(encoder, projector, height: int, width: int) -> tuple[int, int]:
    """(rows, width) the projector gives per encoder input of this size."""
    import torch

    with torch.no_grad():
        feats = projector(encoder(torch.zeros(1, 3, height, width)))
    return int(feats.shape[1]), int(feats.shape[2])


def projected_shape(family, ckpt: LoadedCheckpoint) -> tuple[int, int]:
    """(rows per encoder input, embedding width) at the family's preprocess size."""
    h, w = family.image_preprocess(ckpt).output_hw()
    return projected_rows(family.vision_encoder(ckpt), family.projector(ckpt), h, w)


class LastHiddenState:
    """The vision tower's last hidden state (post-layernorm), what `get_image_features` projects."""

    @staticmethod
    def build(vision_tower):
        import torch

        class _Encoder(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.vision_tower = vision_tower

            def forward(self, pixel_values):
                return self.vision_tower(pixel_values=pixel_values).last_hidden_state

        return _Encoder().eval()


def require_model_types(config, vision: tuple[str, ...], text: tuple[str, ...]) -> None:
    if config.vision_config.model_type not in vision:
        raise UnsupportedConfigError(f"vision tower {config.vision_config.model_type!r} is not supported; supported: {vision}")
    if config.text_config.model_type not in text:
        raise UnsupportedConfigError(f"text backbone {config.text_config.model_type!r} is not supported; supported: {text}")


class SiglipGemmaFamily:
    """What Gemma 3 and PaliGemma share: a SigLIP tower whose last hidden state feeds the model's
    `multi_modal_projector`, and a Gemma backbone. Mixed into their `Family` classes."""

    model_class: str  # the transformers class name
    text_types: tuple[str, ...]

    def load(self, path: str) -> LoadedCheckpoint:
        import transformers

        from ..checkpoint import load_pretrained, quiet_transformers

        quiet_transformers()
        model, config = load_pretrained(getattr(transformers, self.model_class), path)
        self.check_config(config)
        require_model_types(config, ("siglip_vision_model",), self.text_types)
        return LoadedCheckpoint(model=model, processor=transformers.AutoProcessor.from_pretrained(path), config=config,
                                path=str(path))

    def check_config(self, config) -> None:
        """Refuse a config this family does not convert (before the processor is read)."""

    def vision_encoder(self, ckpt: LoadedCheckpoint):
        return LastHiddenState.build(ckpt.model.model.vision_tower)

    def projector(self, ckpt: LoadedCheckpoint):
        return ckpt.model.model.multi_modal_projector.eval()

    def reference_image_features(self, ckpt: LoadedCheckpoint, pixel_values):
        return ckpt.model.model.get_image_features(pixel_values=pixel_values).pooler_output

    def text_backbone(self, ckpt: LoadedCheckpoint):
        return text_backbone(ckpt, ckpt.model.model.language_model, ckpt.model.lm_head, ckpt.config.text_config)

    def image_preprocess(self, ckpt: LoadedCheckpoint) -> ImagePreprocessSpec:
        return image_spec_from_processor(ckpt.processor.image_processor)
