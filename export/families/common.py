"""Pieces every family shares: the prompt spec from an HF tokenizer, the text backbone handed to
the GGUF writer, and the per-tile normalisation spec read from an HF image processor."""
from __future__ import annotations

from pathlib import Path

from mmedge.errors import UnsupportedConfigError
from mmedge.manifest import ImagePreprocessSpec, PromptSpec

from .base import LoadedCheckpoint

RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def resample_name(image_processor) -> str:
    resample = image_processor.resample if isinstance(image_processor.resample, int) else int(image_processor.resample)
    if resample not in RESAMPLE_NAMES:
        raise UnsupportedConfigError(f"image processor resample={resample!r} is not a PIL filter mmedge reproduces")
    return RESAMPLE_NAMES[resample]


def tile_spec(image_processor, height: int, width: int) -> ImagePreprocessSpec:
    """Encoder inputs of a fixed size (tiles, views) normalised as `image_processor` does."""
    ip = image_processor
    normalize = getattr(ip, "do_normalize", True)
    return ImagePreprocessSpec(
        resize_mode="exact",
        size={"height": int(height), "width": int(width)},
        resample=resample_name(ip),
        crop_size=None,
        rescale_factor=float(ip.rescale_factor) if getattr(ip, "do_rescale", True) else None,
        image_mean=[float(v) for v in ip.image_mean] if normalize else None,
        image_std=[float(v) for v in ip.image_std] if normalize else None,
        convert_rgb=bool(getattr(ip, "do_convert_rgb", True) is not False),
    )


def prompt_spec(ckpt: LoadedCheckpoint) -> PromptSpec:
    """Chat template, BOS and the SentencePiece leading space, as the HF tokenizer behaves."""
    from ..gguf.vocab import metaspace_prepend_scheme

    tok = ckpt.processor.tokenizer
    probe = tok("a").input_ids
    add_bos = tok.bos_token_id is not None and len(probe) > 0 and probe[0] == tok.bos_token_id
    spm = (Path(ckpt.path) / "tokenizer.model").is_file()
    return PromptSpec(chat_template=getattr(ckpt.processor, "chat_template", None), add_bos=add_bos,
                      prepend_space=spm and metaspace_prepend_scheme(tok) == "first")


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
