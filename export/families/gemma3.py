"""Gemma 3 (`Gemma3ForConditionalGeneration`): SigLIP tower (last hidden state), a projector that
avg-pools the patches to `mm_tokens_per_image`, RMS-norms and projects them, and the Gemma 3 text
backbone. `<start_of_image>` expands to "\\n\\n<start_of_image>", the image's soft tokens and
"<end_of_image>\\n\\n"; the soft tokens of one image attend to each other both ways
(manifest image.attention "bidirectional-image"). Image embeddings go into the LLM unscaled on both
sides: HF scales only token embeddings and llama.cpp's gemma3 graph only token batches."""
from __future__ import annotations

from mmedge.errors import UnsupportedConfigError
from mmedge.image_layouts import SingleViewWrapped
from mmedge.manifest import ImageSlotSpec, PromptSpec

from .base import Family, FamilyInfo, LoadedCheckpoint, register_family
from .common import SiglipGemmaFamily, projected_shape, prompt_flags


@register_family
class Gemma3Family(SiglipGemmaFamily, Family):
    info = FamilyInfo(
        name="gemma3",
        architectures=("Gemma3ForConditionalGeneration",),
        modalities=("image",),
        projector="avg-pool + RMSNorm + linear (mm_tokens_per_image)",
        encoders=("SigLIP",),
        backbones=("gemma3_text",),
        targets=("onnx", "executorch", "coreml", "gguf"),
    )

    model_class = "Gemma3ForConditionalGeneration"
    text_types = ('gemma3_text',)

    def image_slot(self, ckpt: LoadedCheckpoint) -> ImageSlotSpec:
        processor, tok = ckpt.processor, ckpt.processor.tokenizer
        tokens, dim = projected_shape(self, ckpt)
        if tokens != processor.image_seq_length:
            raise UnsupportedConfigError(f"the projector gives {tokens} rows per image, the processor expands "
                                         f"{processor.image_seq_length} image tokens")
        return ImageSlotSpec(
            marker=processor.boi_token,
            marker_token_id=int(tok.image_token_id),
            tokens_per_image=tokens,
            embedding_dim=dim,
            # What Gemma3Processor puts in place of each <start_of_image>.
            layout=SingleViewWrapped(image_token=tok.image_token, before=f"\n\n{tok.boi_token}", after=f"{tok.eoi_token}\n\n"),
            attention="bidirectional-image",
        )

    def prompt(self, ckpt: LoadedCheckpoint) -> PromptSpec:
        add_bos, prepend_space = prompt_flags(ckpt)
        return PromptSpec(chat_template=getattr(ckpt.processor, "chat_template", None), add_bos=add_bos,
                          prepend_space=prepend_space)

    def reference_inputs(self, ckpt: LoadedCheckpoint, images: list, text: str) -> dict:
        # token_type_ids carry the image blocks that HF's mask makes bidirectional.
        return ckpt.processor(images=images or None, text=text, return_tensors="pt", return_mm_token_type_ids=True)
