"""BERT's WordPiece tokenizer in pure Python, step for step as Hugging Face `tokenizers` runs
`BertTokenizerFast` (normalizer BertNormalizer, pre-tokenizer BertPreTokenizer, model WordPiece,
post-processor [CLS] ... [SEP]). InstructBLIP's Q-Former reads the prompt through it.

1. Added tokens ([CLS], [SEP], ...) are matched on the raw text first and kept whole.
2. Normalize the rest: drop NUL, U+FFFD and control characters (other than tab/newline/CR), map
   whitespace to a space, put spaces around CJK ideographs, strip accents (NFD, drop Mn marks),
   lowercase character by character (Rust's per-char lowercase: no final-sigma rule).
3. Split on whitespace, then isolate each punctuation character (ASCII punctuation or a Unicode
   P* category).
4. Each word: longest-match-first pieces, later pieces with the "##" prefix; a word with no full
   cover, or longer than `max_input_chars_per_word`, is one unknown token.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass

# Rust's char::is_whitespace (Unicode White_Space), which tokenizers uses; str.isspace differs.
_WHITESPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(map(chr, range(0x2000, 0x200B))))
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
               (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


@dataclass(frozen=True)
class WordPieceConfig:
    vocab: tuple[str, ...]  # token text by id
    added_tokens: tuple[str, ...]  # matched on the raw text before normalization
    unk_token: str
    cls_token: str
    sep_token: str
    lowercase: bool = True
    strip_accents: bool = True
    clean_text: bool = True
    handle_chinese_chars: bool = True
    continuing_prefix: str = "##"
    max_input_chars_per_word: int = 100


def _is_control(c: str) -> bool:
    return c not in "\t\n\r" and unicodedata.category(c).startswith("C")


def _is_cjk(c: str) -> bool:
    cp = ord(c)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def _is_punct(c: str) -> bool:
    return c in _ASCII_PUNCT or unicodedata.category(c).startswith("P")


class WordPieceTokenizer:
    def __init__(self, config: WordPieceConfig):
        self.config = config
        self.ids = {tok: i for i, tok in enumerate(config.vocab)}
        # Longest added token first, so that one never splits a longer one that contains it.
        self.added = sorted(config.added_tokens, key=len, reverse=True)
        for name in (config.unk_token, config.cls_token, config.sep_token, *config.added_tokens):
            if name not in self.ids:
                raise ValueError(f"WordPiece: token {name!r} is not in the vocabulary")

    def normalize(self, text: str) -> str:
        c = self.config
        if c.clean_text:
            text = "".join(" " if ch in _WHITESPACE else ch for ch in text
                           if ch not in "\x00\ufffd" and not _is_control(ch))
        if c.handle_chinese_chars:
            text = "".join(f" {ch} " if _is_cjk(ch) else ch for ch in text)
        if c.strip_accents:
            text = "".join(ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn")
        if c.lowercase:
            text = "".join(ch.lower() for ch in text)
        return text

    @staticmethod
    def pre_tokenize(text: str) -> list[str]:
        words: list[str] = []
        for chunk in "".join(" " if ch in _WHITESPACE else ch for ch in text).split(" "):
            word = ""
            for ch in chunk:
                if _is_punct(ch):
                    if word:
                        words.append(word)
                    words.append(ch)
                    word = ""
                else:
                    word += ch
            if word:
                words.append(word)
        return words

    def word_ids(self, word: str) -> list[int]:
        c = self.config
        if len(word) > c.max_input_chars_per_word:
            return [self.ids[c.unk_token]]
        out, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else c.continuing_prefix + word[start:end]
                if piece in self.ids:
                    out.append(self.ids[piece])
                    break
                end -= 1
            if end == start:  # no piece covers this position: the whole word is unknown
                return [self.ids[c.unk_token]]
            start = end
        return out

    def _segments(self, text: str) -> list[tuple[str, bool]]:
        """(piece, is_added_token) in order: added tokens cut out of the raw text."""
        out, buf, i = [], "", 0
        while i < len(text):
            hit = next((a for a in self.added if text.startswith(a, i)), None)
            if hit is None:
                buf += text[i]
                i += 1
                continue
            if buf:
                out.append((buf, False))
                buf = ""
            out.append((hit, True))
            i += len(hit)
        if buf:
            out.append((buf, False))
        return out

    def encode(self, text: str) -> list[int]:
        """[CLS] + the text's ids + [SEP], as `BertTokenizerFast(text).input_ids`."""
        ids = [self.ids[self.config.cls_token]]
        for piece, added in self._segments(text):
            if added:
                ids.append(self.ids[piece])
            else:
                for word in self.pre_tokenize(self.normalize(piece)):
                    ids += self.word_ids(word)
        ids.append(self.ids[self.config.sep_token])
        return ids
