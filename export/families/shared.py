"""Helpers every family uses: the image processor as a preprocess spec, the text backbone for the
GGUF writer, the tokenizer's prompt flags. (Imported by the families; registers nothing.)"""
from __future__ import annotations

from pathlib import Path

from mmedge.errors import UnsupportedConfigError
from mmedge.manifest import ImagePreprocessSpec

from .base import LoadedCheckpoint

# Image processors whose preprocessing mmedge reproduces, and how their fields map to the spec.
_RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
SUPPORTED_IMAGE_PROCESSORS = ("CLIPImageProcessor", "SiglipImageProcessor", "Gemma3ImageProcessor")


def image_spec_from_processor(ip) -> ImagePreprocessSpec:
    name = type(ip).__name__.removesuffix("Fast").removesuffix("Pil")
    if name not in SUPPORTED_IMAGE_PROCESSORS:
        raise UnsupportedConfigError(
            f"image processor {type(ip).__name__} is not reproduced by mmedge's runtime; supported: {SUPPORTED_IMAGE_PROCESSORS}"
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
    resample = ip.resample if isinstance(ip.resample, int) else int(ip.resample)
    return ImagePreprocessSpec(
        resize_mode=mode,
        size=size,
        resample=_RESAMPLE_NAMES[resample],
        crop_size=crop,
        rescale_factor=float(ip.rescale_factor) if getattr(ip, "do_rescale", True) else None,
        image_mean=[float(v) for v in ip.image_mean] if getattr(ip, "do_normalize", True) else None,
        image_std=[float(v) for v in ip.image_std] if getattr(ip, "do_normalize", True) else None,
        convert_rgb=bool(getattr(ip, "do_convert_rgb", True) is not False),
    )


def text_backbone_of(ckpt: LoadedCheckpoint, language_model, lm_head):
    """The text backbone in `*ForCausalLM` naming, for the GGUF writer."""
    from ..gguf.backbone import TextBackbone

    tensors = {f"model.{k}": v for k, v in language_model.state_dict().items()}
    tied = bool(getattr(ckpt.config, "tie_word_embeddings", False) or ckpt.config.text_config.tie_word_embeddings)
    if not tied:
        tensors["lm_head.weight"] = lm_head.weight
    tokenizer = ckpt.processor.tokenizer
    return TextBackbone(
        model_type=ckpt.config.text_config.model_type,
        config=ckpt.config.text_config,
        tensors=tensors,
        tie_word_embeddings=tied,
        tokenizer=tokenizer,
        tokenizer_dir=ckpt.path,
        # The tokenizer's own template, else the processor's (LLaVA keeps it there) so that
        # the GGUF carries one either way.
        chat_template=getattr(tokenizer, "chat_template", None) or getattr(ckpt.processor, "chat_template", None),
        name=Path(ckpt.path).name,
    )


def prompt_flags(ckpt: LoadedCheckpoint) -> tuple[bool, bool]:
    """(the tokenizer adds BOS, the runtime must prepend one space: SentencePiece with HF's 'first' scheme)."""
    from ..gguf.vocab import metaspace_prepend_scheme

    tok = ckpt.processor.tokenizer
    probe = tok("a").input_ids
    add_bos = tok.bos_token_id is not None and len(probe) > 0 and probe[0] == tok.bos_token_id
    spm = (Path(ckpt.path) / "tokenizer.model").is_file()
    return add_bos, spm and metaspace_prepend_scheme(tok) == "first"


def projected_shape(family, ckpt: LoadedCheckpoint) -> tuple[int, int]:
    """(rows per encoder input, embedding width) of projector(encoder(zeros)) at the preprocess size."""
    import torch

    h, w = family.image_preprocess(ckpt).output_hw()
    with torch.no_grad():
        feats = family.projector(ckpt)(family.vision_encoder(ckpt)(torch.zeros(1, 3, h, w)))
    return int(feats.shape[1]), int(feats.shape[2])


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
