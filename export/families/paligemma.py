"""PaliGemma (`PaliGemmaForConditionalGeneration`): SigLIP tower (last hidden state), a linear
projector, the Gemma 1 backbone. The prompt is a prefix-LM prefix: "<image>"*n, BOS, the text, "\\n",
all attending to each other both ways (manifest image.attention "prefix"), positions from 1.

Two llama.cpp facts shape the bundle: its gemma graph multiplies every input row by sqrt(n_embd),
image rows too, while HF scales only token embeddings, so the runtime divides image rows by
sqrt(n_embd) first (image.embedding_divisor; exact when sqrt(n_embd) is a power of two, else within
an ulp); and a batch cannot mix tokens and embeddings, so the prompt's text enters as rows of the
GGUF's token_embd (kept F32/F16/Q8_0 by the exporter, read exactly by runtime/gguf_rows.py)."""
from __future__ import annotations

import math

from mmedge.errors import UnsupportedConfigError
from mmedge.image_layouts import SingleView
from mmedge.manifest import ImageSlotSpec, PromptSpec

from .base import Family, FamilyInfo, LoadedCheckpoint, register_family
from .common import SiglipGemmaFamily, projected_shape, prompt_flags

# PaliGemmaProcessor's text layout: the images, BOS right after the last image marker, the text,
# "\n". Rendered by mmedge's own template so the runtime needs no PaliGemma-specific code.
_TEMPLATE = (
    "{%- set ns = namespace(images='', text='') -%}"
    "{%- for message in messages -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{%- set ns.images = ns.images + IMAGE -%}"
    "{%- elif item['type'] == 'text' -%}{%- set ns.text = ns.text + item['text'] -%}{%- endif -%}"
    "{%- endfor -%}{%- endfor -%}"
    "{%- set full = ns.images + ns.text -%}"
    "{%- if IMAGE not in full -%}{{ raise_exception('PaliGemma answers about an image: give at least one') }}{%- endif -%}"
    "{%- set cut = full.rfind(IMAGE) + IMAGE_LEN -%}"
    "{{ full[:cut] }}BOS{{ full[cut:] }}{{ '\\n' }}"
)


def paligemma_template(image_token: str, bos_token: str) -> str:
    return (_TEMPLATE.replace("IMAGE_LEN", str(len(image_token))).replace("IMAGE", repr(image_token))
            .replace("BOS", bos_token))


@register_family
class PaliGemmaFamily(SiglipGemmaFamily, Family):
    info = FamilyInfo(
        name="paligemma",
        architectures=("PaliGemmaForConditionalGeneration",),
        modalities=("image",),
        projector="linear",
        encoders=("SigLIP",),
        backbones=("gemma",),
        targets=("onnx", "executorch", "coreml", "gguf"),
    )

    model_class = "PaliGemmaForConditionalGeneration"
    text_types = ('gemma',)

    def check_config(self, config) -> None:
        if config.text_config.model_type == "gemma2":
            raise UnsupportedConfigError("PaliGemma 2 (Gemma 2 backbone) is not verified against transformers yet; "
                                         "only PaliGemma 1 (Gemma backbone) is exported")

    def image_slot(self, ckpt: LoadedCheckpoint) -> ImageSlotSpec:
        import numpy as np

        processor = ckpt.processor
        tokens, dim = projected_shape(self, ckpt)
        if tokens != processor.image_seq_length:
            raise UnsupportedConfigError(f"the projector gives {tokens} rows per image, the processor expands "
                                         f"{processor.image_seq_length} image tokens")
        return ImageSlotSpec(
            marker=processor.image_token,
            marker_token_id=int(processor.image_token_id),
            tokens_per_image=tokens,
            embedding_dim=dim,
            layout=SingleView(),
            attention="prefix",
            # llama.cpp computes sqrtf(n_embd) in float32; the same value here.
            embedding_divisor=float(np.float32(math.sqrt(ckpt.config.text_config.hidden_size))),
        )

    def prompt(self, ckpt: LoadedCheckpoint) -> PromptSpec:
        tok = ckpt.processor.tokenizer
        _, prepend_space = prompt_flags(ckpt)
        # BOS is in the template's text (after the images), not added in front.
        return PromptSpec(chat_template=paligemma_template(ckpt.processor.image_token, tok.bos_token), add_bos=False,
                          prepend_space=prepend_space, first_position=1)

    def reference_text_logits(self, ckpt: LoadedCheckpoint, input_ids):
        # Without token_type_ids HF's PaliGemma attends over the text both ways; marked as suffix
        # (1) it is causal, which is what the GGUF alone computes.
        import torch

        return ckpt.model(input_ids=input_ids, token_type_ids=torch.ones_like(input_ids)).logits

    def reference_inputs(self, ckpt: LoadedCheckpoint, images: list, text: str) -> dict:
        """`text` is already laid out (images, BOS, text, newline) by the template, so it is tokenized
        as is; the processor would insert BOS and the newline a second time."""
        import torch

        processor = ckpt.processor
        expanded = text.replace(processor.image_token, processor.image_token * processor.image_seq_length)
        ids = processor.tokenizer(expanded, add_special_tokens=False, return_tensors="pt").input_ids
        pixels = processor.image_processor(images, return_tensors="pt")["pixel_values"]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": pixels,
                "token_type_ids": torch.zeros_like(ids)}
