"""InstructBLIP (`InstructBlipForConditionalGeneration`) with a Llama/Vicuna backbone, images only.

Parts: the BLIP ViT's last hidden state (post-layernorm) as encoder; the Q-Former (learned query
tokens attending to the image features, with the prompt's BERT WordPiece ids as extra tokens)
plus the language projection as projector, which takes three inputs: image_features,
qformer_input_ids and qformer_attention_mask ([batch, text], text length dynamic). One image per
prompt; its `num_query_tokens` rows go before BOS (InstructBlipProcessor's order), and the
Q-Former reads the prompt text as the processor gives it to its qformer_tokenizer (the
`qformer-prefix` layout, `runtime/layouts/qformer.py`). Flan-T5 backbones are refused: the
injected rows would go into a T5 encoder, which the llama.cpp path does not take.
"""
from __future__ import annotations

import json

from mmedge.errors import CheckpointError, UnsupportedConfigError
from mmedge.export.verify_inputs import VerifyCase
from mmedge.image_layouts import QFormerPrefix
from mmedge.manifest import ImagePreprocessSpec, ImageSlotSpec, PromptSpec

from ..checkpoint import load_pretrained, quiet_transformers
from .base import Family, FamilyInfo, LoadedCheckpoint, register_family
from .common import LastHiddenState, image_spec_from_processor, prompt_spec, text_backbone

SUPPORTED_TEXT = ("llama",)
IMAGE_PROCESSORS = ("BlipImageProcessor",)
# The instruction of the projector's example and verification calls (end to end uses each case's prompt).
EXAMPLE_INSTRUCTION = "Describe the picture in detail."


def _projector_class():
    import torch

    class QFormerProjector(torch.nn.Module):
        """(image_features [B, P, Dv], qformer_input_ids [B, L], qformer_attention_mask [B, L]) ->
        [B, num_query_tokens, n_embd]: the model's get_image_features after the vision model."""

        # The prompt's length varies: dim 1 of the Q-Former inputs is dynamic (one shared size).
        dynamic_dims = {"qformer_input_ids": {1: "text"}, "qformer_attention_mask": {1: "text"}}

        def __init__(self, model):
            super().__init__()
            self.query_tokens, self.qformer, self.language_projection = (
                model.query_tokens, model.qformer, model.language_projection)

        def forward(self, image_features, qformer_input_ids, qformer_attention_mask):
            batch = image_features.shape[0]
            queries = self.query_tokens.expand(batch, -1, -1)
            mask = torch.cat([torch.ones(queries.shape[:-1], dtype=qformer_attention_mask.dtype), qformer_attention_mask], 1)
            out = self.qformer(input_ids=qformer_input_ids, attention_mask=mask, query_embeds=queries,
                               encoder_hidden_states=image_features,
                               encoder_attention_mask=torch.ones(image_features.shape[:-1], dtype=torch.long),
                               return_dict=True)
            return self.language_projection(out.last_hidden_state[:, : queries.shape[1], :])

    return QFormerProjector


def _wordpiece_layout(qformer_tokenizer, max_length: int) -> QFormerPrefix:
    """The Q-Former tokenizer as layout data; refuses a tokenizer that is not BERT's WordPiece pipeline."""
    data = json.loads(qformer_tokenizer.backend_tokenizer.to_str())
    norm, pre, model = data.get("normalizer") or {}, data.get("pre_tokenizer") or {}, data.get("model") or {}
    if norm.get("type") != "BertNormalizer" or pre.get("type") != "BertPreTokenizer" or model.get("type") != "WordPiece":
        raise UnsupportedConfigError(
            f"the Q-Former tokenizer is {norm.get('type')}/{pre.get('type')}/{model.get('type')}; mmedge's runtime "
            "reproduces BERT's (BertNormalizer, BertPreTokenizer, WordPiece) only")
    if not norm.get("clean_text", True) or not norm.get("handle_chinese_chars", True) or model.get(
            "continuing_subword_prefix", "##") != "##":
        raise UnsupportedConfigError("the Q-Former tokenizer's clean_text/handle_chinese_chars off or a subword prefix "
                                     "other than '##' is not reproduced")
    added = data.get("added_tokens") or []
    if any(a.get("normalized") or a.get("lstrip") or a.get("rstrip") or a.get("single_word") for a in added):
        raise UnsupportedConfigError("the Q-Former tokenizer has added tokens with normalized/lstrip/rstrip/single_word "
                                     "set; mmedge matches added tokens on the raw text only")
    vocab = qformer_tokenizer.get_vocab()
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise UnsupportedConfigError("the Q-Former tokenizer's ids are not contiguous from 0")
    probe = qformer_tokenizer("a b").input_ids
    tok = qformer_tokenizer
    if probe[0] != tok.cls_token_id or probe[-1] != tok.sep_token_id:
        raise UnsupportedConfigError("the Q-Former tokenizer does not write [CLS] ... [SEP] around the text")
    lowercase = bool(norm.get("lowercase", True))
    strip = norm.get("strip_accents")
    return QFormerPrefix(vocab=tuple(t for t, _ in by_id), added_tokens=tuple(a["content"] for a in added),
                         unk_token=tok.unk_token, cls_token=tok.cls_token, sep_token=tok.sep_token,
                         lowercase=lowercase, strip_accents=lowercase if strip is None else bool(strip),
                         max_length=int(max_length),
                         max_input_chars_per_word=int(model.get("max_input_chars_per_word", 100)))


@register_family
class InstructBlipFamily(Family):
    info = FamilyInfo(
        name="instructblip",
        architectures=("InstructBlipForConditionalGeneration",),
        modalities=("image",),
        projector="Q-Former (query tokens + the prompt's WordPiece ids) + linear language projection",
        encoders=("BLIP ViT",),
        backbones=SUPPORTED_TEXT,
        # The projector takes three inputs (features, Q-Former ids, mask): only ONNX compiles that.
        targets=("onnx", "gguf"),
        static_calibration=False,
    )
    # One image per prompt: case 2 is a second single-image prompt, with a longer instruction.
    verify_cases = (
        VerifyCase("one image, short instruction", ((97, 61),), "What is shown in this picture?"),
        VerifyCase("one image, long instruction", ((64, 80),),
                   "Describe the colours, the shapes and the light in this photograph, then say where it was taken."),
    )

    def load(self, path: str) -> LoadedCheckpoint:
        quiet_transformers()
        import transformers

        try:
            config = transformers.InstructBlipConfig.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, TypeError) as e:
            raise CheckpointError(f"{path}: config.json is not an InstructBlipConfig transformers can read: {e}") from None
        text_type = config.text_config.model_type
        if text_type not in SUPPORTED_TEXT:
            extra = (" (Flan-T5 is an encoder-decoder: llama.cpp cannot take the image rows into its encoder "
                     "as mmedge injects them)") if text_type in ("t5", "mt5", "umt5") else ""
            raise UnsupportedConfigError(f"InstructBLIP text backbone {text_type!r} is not supported{extra}; "
                                         f"supported: {SUPPORTED_TEXT}")
        try:
            processor = transformers.InstructBlipProcessor.from_pretrained(str(path))
        except (OSError, ValueError, TypeError) as e:
            raise CheckpointError(f"{path}: the InstructBLIP processor files are unreadable: {e}") from None
        image_spec_from_processor(processor.image_processor, IMAGE_PROCESSORS)
        _wordpiece_layout(processor.qformer_tokenizer, config.qformer_config.max_position_embeddings)
        if processor.num_query_tokens != config.num_query_tokens:
            raise UnsupportedConfigError(f"the processor's num_query_tokens {processor.num_query_tokens} differs from "
                                         f"the model's {config.num_query_tokens}; the checkpoint's files disagree")
        model, config = load_pretrained(transformers.InstructBlipForConditionalGeneration, path)
        return LoadedCheckpoint(model=model, processor=processor, config=config, path=str(path))

    # -- parts ---------------------------------------------------------------------------------
    def vision_encoder(self, ckpt: LoadedCheckpoint):
        return LastHiddenState.build(ckpt.model.vision_model)

    def projector(self, ckpt: LoadedCheckpoint):
        return _projector_class()(ckpt.model).eval()

    def qformer_inputs(self, ckpt: LoadedCheckpoint, text: str) -> dict:
        tok = ckpt.processor.qformer_tokenizer(text, return_tensors="pt")
        return {"qformer_input_ids": tok["input_ids"], "qformer_attention_mask": tok["attention_mask"]}

    def projector_example(self, ckpt: LoadedCheckpoint, features) -> dict:
        one = self.qformer_inputs(ckpt, EXAMPLE_INSTRUCTION)
        return {k: v.expand(features.shape[0], -1).contiguous() for k, v in one.items()}

    def reference_projector_inputs(self, ckpt: LoadedCheckpoint, image, marker: str) -> dict:
        out = self.reference_inputs(ckpt, [image], marker + EXAMPLE_INSTRUCTION)
        return {k: out[k] for k in ("qformer_input_ids", "qformer_attention_mask")}

    def reference_image_features(self, ckpt: LoadedCheckpoint, pixel_values, qformer_input_ids,
                                 qformer_attention_mask):
        return ckpt.model.get_image_features(pixel_values=pixel_values, qformer_input_ids=qformer_input_ids,
                                             qformer_attention_mask=qformer_attention_mask).pooler_output

    def text_backbone(self, ckpt: LoadedCheckpoint):
        lm = ckpt.model.language_model
        return text_backbone(ckpt, lm.model, lm.lm_head, ckpt.config.text_config)

    def reference_text_logits(self, ckpt: LoadedCheckpoint, input_ids):
        return ckpt.model.language_model(input_ids=input_ids).logits

    # -- data for the runtime ---------------------------------------------------------------------
    def image_preprocess(self, ckpt: LoadedCheckpoint) -> ImagePreprocessSpec:
        return image_spec_from_processor(ckpt.processor.image_processor, IMAGE_PROCESSORS)

    def image_slot(self, ckpt: LoadedCheckpoint) -> ImageSlotSpec:
        processor = ckpt.processor
        return ImageSlotSpec(
            marker=self.image_slot_marker(ckpt), marker_token_id=int(ckpt.config.image_token_index),
            tokens_per_image=int(ckpt.config.num_query_tokens),
            embedding_dim=int(ckpt.model.language_projection.out_features),
            layout=_wordpiece_layout(processor.qformer_tokenizer, ckpt.config.qformer_config.max_position_embeddings),
        )

    def prompt(self, ckpt: LoadedCheckpoint) -> PromptSpec:
        return prompt_spec(ckpt)

    def reference_inputs(self, ckpt: LoadedCheckpoint, images: list, text: str) -> dict:
        """The processor is given the formatted prompt without the image marker: it puts the query
        tokens before BOS itself, and its qformer_tokenizer reads exactly that text."""
        marker = self.image_slot_marker(ckpt)
        return ckpt.processor(images=images or None, text=text.replace(marker, ""), return_tensors="pt")

    @staticmethod
    def image_slot_marker(ckpt: LoadedCheckpoint) -> str:
        token = ckpt.processor.image_token
        return token.content if hasattr(token, "content") else str(token)
