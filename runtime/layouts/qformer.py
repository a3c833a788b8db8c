"""InstructBLIP: one view per image, one image per prompt, its query rows before BOS, and the
prompt text handed to the projector (the Q-Former) as BERT WordPiece ids.

What the Q-Former reads is what transformers' InstructBlipProcessor gives its `qformer_tokenizer`:
the whole text the processor is called with (the formatted prompt, chat template included when
there is one), without image tokens (the processor adds those itself, before BOS). So the
formatted prompt's one marker is removed and the rest goes both to the LLM tokenizer and here.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from mmedge.errors import PromptError
from mmedge.image_layouts import QFormerPrefix

from ..preprocess import preprocess_image
from ..wordpiece import WordPieceConfig, WordPieceTokenizer
from .base import ImageLayout, PreparedImage, register_layout


@register_layout
class QFormerPrefixLayout(ImageLayout):
    kind = "qformer-prefix"
    spec: QFormerPrefix
    rows_before_bos = True

    def __init__(self, spec, preprocess, slot):
        super().__init__(spec, preprocess, slot)
        self.tokenizer = WordPieceTokenizer(WordPieceConfig(
            vocab=spec.vocab, added_tokens=spec.added_tokens, unk_token=spec.unk_token, cls_token=spec.cls_token,
            sep_token=spec.sep_token, lowercase=spec.lowercase, strip_accents=spec.strip_accents,
            max_input_chars_per_word=spec.max_input_chars_per_word))

    def check_prompt(self, prompt: str, n_images: int, raw: bool = False) -> None:
        if n_images != 1:
            raise PromptError(f"this model (InstructBLIP) takes exactly one image per prompt, got {n_images}")
        if not isinstance(prompt, str):
            return  # format_prompt names the type error
        marker = self.slot.marker
        if raw:  # a raw prompt must say where the image goes: first, its only possible place
            if not prompt.startswith(marker) or prompt.count(marker) != 1:
                raise PromptError(f"a raw InstructBLIP prompt starts with the one image marker {marker!r} "
                                  "(the image always goes before the prompt) and holds no other")
        elif marker in prompt:
            raise PromptError(f"InstructBLIP always places its image before the prompt; remove the image marker "
                              f"{self.slot.marker!r} from the prompt text")

    def qformer_inputs(self, text: str) -> dict[str, np.ndarray]:
        ids = self.tokenizer.encode(text)
        if len(ids) > self.spec.max_length:
            raise PromptError(f"the prompt takes {len(ids)} Q-Former tokens, the Q-Former reads at most "
                              f"{self.spec.max_length}; shorten the prompt")
        ids = np.asarray([ids], dtype=np.int64)
        return {"qformer_input_ids": ids, "qformer_attention_mask": np.ones_like(ids)}

    def bind_prompt(self, text: str, prepared: list[PreparedImage]) -> str:
        if len(prepared) != 1 or text.count(self.slot.marker) != 1:
            raise PromptError(f"the formatted prompt holds {text.count(self.slot.marker)} image marker(s) for "
                              f"{len(prepared)} image(s); InstructBLIP takes exactly one image")
        text = text.replace(self.slot.marker, "")
        inputs = self.qformer_inputs(text)
        for p in prepared:
            p.projector_inputs = inputs
        return text

    def prepare(self, image: Image.Image) -> PreparedImage:
        n = self.slot.tokens_per_image
        return PreparedImage(tiles=preprocess_image(image, self.preprocess)[None], text="", n_rows=n)
