"""Small real tokenizers, trained offline and deterministically, for tiny test checkpoints.

Three kinds, the ones LLaVA-family checkpoints ship: a Llama-3 style byte-level BPE, a
Qwen2 byte-level BPE (its own split regex and NFC), and a Llama/SentencePiece model with
byte fallback. They are trained on a short English text written for this purpose.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

from ..gguf.vocab import LLAMA3_SPLIT, QWEN2_SPLIT

CORPUS = """
A small red boat drifts across the quiet lake while the morning light turns the water gold.
The photograph shows a cat sleeping on a wooden chair next to an open window.
Two children are playing with a bright yellow ball in the park; their dog runs after it.
What is in this image? Describe the picture in detail, then answer the question briefly.
The astronaut looks at the Earth from the station, counting 16 sunrises every day.
Coffee, tea and water stand on the kitchen table beside a bowl of apples and oranges.
Numbers like 3.14159, 2026 and 42 appear in the chart, with labels in English and Deutsch.
She said: "It's the camera's fault, not mine!" and we'll never know if they'd agree.
Mountains rise above the clouds; snow covers the highest peaks even in the summer months.
The robot picks up the blue cube, rotates it twice, and places it on the green square.
A street at night: wet asphalt reflects neon signs, cars wait at the red traffic light.
Trees, grass, flowers, birds and insects live together in the old garden behind the house.
Question: how many people are standing near the bus? Answer: there are four people.
The image is blurry, dark and noisy, but the shape of a bicycle is still visible.
Über den Wolken scheint die Sonne; café, naïve, résumé and 東京 are words with accents or CJK.
""" * 3

def _byte_level_bpe(split_regex: str, nfc: bool, specials: list[str], vocab_size: int):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(byte_fallback=False, ignore_merges=False))
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split_regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    return tok


def build_llama3_bpe(vocab_size: int = 600, extra_specials: tuple[str, ...] = (), image_attribute: bool = True):
    """Byte-level BPE with Llama 3's split regex; adds BOS like Llama 3. `image_attribute`: name
    `<image>` as the tokenizer's `image_token` (InstructBLIP's processor wants it unnamed)."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    bos, eos, pad, image = "<|begin_of_text|>", "<|end_of_text|>", "<pad>", "<image>"
    tok = _byte_level_bpe(LLAMA3_SPLIT, nfc=False, specials=[bos, eos, pad, image, *extra_specials], vocab_size=vocab_size)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad,
                                   extra_special_tokens={"image_token": image} if image_attribute else {},
                                   clean_up_tokenization_spaces=False)


def build_qwen2_bpe(vocab_size: int = 600, image: str = "<image>", extra_specials: tuple[str, ...] = ()):
    """Byte-level BPE with Qwen2's split regex and NFC; no BOS, as Qwen2. `image`: the image token."""
    from transformers import PreTrainedTokenizerFast

    eot, im_start, im_end = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
    tok = _byte_level_bpe(QWEN2_SPLIT, nfc=True, specials=[eot, im_start, im_end, image, *extra_specials],
                          vocab_size=vocab_size)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=im_end, pad_token=eot,
                                   extra_special_tokens={"image_token": image}, clean_up_tokenization_spaces=False)


def _train_spm(tmp: str, vocab_size: int, **options) -> bytes:
    """A SentencePiece BPE model with byte fallback trained on CORPUS; returns the model file's bytes."""
    import sentencepiece as spm

    corpus = Path(tmp) / "corpus.txt"
    corpus.write_text(CORPUS)
    prefix = str(Path(tmp) / "spm")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=prefix, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, num_threads=1, split_digits=True,
        allow_whitespace_only_pieces=True, remove_extra_whitespaces=False,
        normalization_rule_name="identity", minloglevel=2, **options,
    )
    return Path(prefix + ".model").read_bytes()


def _load_spm(tokenizer_cls, model: bytes, tmp: str, **kwargs):
    """transformers 5 converts a SentencePiece model when loading a folder that holds one. It saves
    only tokenizer.json; real checkpoints also ship the model, which the GGUF converter reads, so
    the builders keep it on the tokenizer for the checkpoint writer."""
    folder = Path(tmp) / "tok"
    folder.mkdir()
    (folder / "tokenizer.model").write_bytes(model)
    tok = tokenizer_cls.from_pretrained(str(folder), **kwargs)
    tok.mmedge_spm_model = model
    return tok


def build_llama_spm(vocab_size: int = 400):
    """A SentencePiece BPE model with byte fallback, loaded as transformers' Llama tokenizer."""
    from transformers import LlamaTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        model = _train_spm(tmp, vocab_size, bos_id=1, eos_id=2, unk_id=0, pad_id=-1)
        tok = _load_spm(LlamaTokenizer, model, tmp, legacy=False, add_bos_token=True, add_eos_token=False)
        tok.add_special_tokens({"pad_token": "<pad>"})
        tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
        return tok


# Idefics3 / SmolVLM tile tags: the processor writes them around each tile's image tokens.
IDEFICS3_SPECIALS = ("<fake_token_around_image>", "<global-img>", "<end_of_utterance>",
                     *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)))

# Gemma's chat-turn markers; every Gemma tokenizer has them.
GEMMA_TURN_TOKENS = ["<start_of_turn>", "<end_of_turn>"]


def build_gemma_spm(image_tokens: dict[str, str], vocab_size: int = 400):
    """A Gemma-style SentencePiece model (no dummy prefix, Gemma's special ids and names) loaded as
    transformers' Gemma tokenizer, with the turn markers and `image_tokens` (attribute -> text,
    e.g. {"image_token": "<image>"}) added as special tokens after the pieces, as Gemma ships them."""
    from transformers import GemmaTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        model = _train_spm(tmp, vocab_size, pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>",
                           eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>", add_dummy_prefix=False)
        tok = _load_spm(GemmaTokenizer, model, tmp, add_bos_token=True, add_eos_token=False)
        tok.add_special_tokens({"additional_special_tokens": GEMMA_TURN_TOKENS + list(image_tokens.values())})
        # Named attributes (tokenizer.boi_token, .image_token, ...) that the processors read.
        saved = Path(tmp) / "saved"
        tok.save_pretrained(saved)
        named = GemmaTokenizer.from_pretrained(str(saved), extra_special_tokens=dict(image_tokens))
        named.mmedge_spm_model = model
        return named


# Qwen2-VL: the chat template writes <|vision_start|><|image_pad|><|vision_end|> per image and
# <|vision_start|><|video_pad|><|vision_end|> per video.
QWEN2VL_SPECIALS = ("<|vision_start|>", "<|vision_end|>", "<|video_pad|>")


# Qwen2-Audio's audio tags: the processor expands <|AUDIO|> to one token per audio embedding row.
QWEN2_AUDIO_SPECIALS = ("<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>")

TOKENIZER_BUILDERS: dict[str, Callable] = {
    "llama3-bpe": build_llama3_bpe,
    "idefics3-bpe": lambda: build_llama3_bpe(extra_specials=IDEFICS3_SPECIALS),
    "qwen2-bpe": build_qwen2_bpe,
    "qwen2vl-bpe": lambda: build_qwen2_bpe(image="<|image_pad|>", extra_specials=QWEN2VL_SPECIALS),
    "llama-spm": build_llama_spm,
    "qwen2audio-bpe": lambda: build_qwen2_bpe(extra_specials=QWEN2_AUDIO_SPECIALS),
}


def build_bert_wordpiece(vocab_size: int = 300):
    """A BERT-uncased style WordPiece (lowercase, accents stripped, [CLS] ... [SEP]) as
    `BertTokenizerFast`: InstructBLIP's Q-Former tokenizer."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=specials,
                                        show_progress=False, continuing_subword_prefix="##")
    tok.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                             cls_token="[CLS]", mask_token="[MASK]", do_lower_case=True)
