"""The HF tokenizer -> GGUF tokenizer metadata (tokens, types, scores, merges, specials).

Two kinds are converted: byte-level BPE from tokenizer.json (llama.cpp model "gpt2"; the
pre-tokenizer regex is identified from a table, since llama.cpp names it rather than reads
it), and SentencePiece from tokenizer.model (llama.cpp model "llama").
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mmedge.errors import UnsupportedConfigError

# The pre-tokenizer split regexes of the BPE families we recognise (by exact match).
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# llama.cpp token types (llama_token_type in llama.h / gguf TokenType)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# The split regex of a byte-level BPE pre-tokenizer -> llama.cpp's name for it.
BPE_PRE_TOKENIZERS: dict[str, str] = {
    LLAMA3_SPLIT: "llama-bpe",
    QWEN2_SPLIT: "qwen2",
}


@dataclass
class GgufVocab:
    model: str  # "gpt2" | "llama"
    pre: str
    tokens: list[str]
    types: list[int]
    scores: list[float] | None = None
    merges: list[str] = field(default_factory=list)
    add_space_prefix: bool | None = None


def _tokenizer_json(tokenizer) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if backend is None:
        raise UnsupportedConfigError(f"tokenizer {type(tokenizer).__name__} has no tokenizers backend to convert")
    return json.loads(backend.to_str())


def _split_regexes(pre: dict | None) -> list[str]:
    if not pre:
        return []
    if pre.get("type") == "Sequence":
        return [r for p in pre.get("pretokenizers", []) for r in _split_regexes(p)]
    if pre.get("type") == "Split":
        pattern = pre.get("pattern", {})
        return [pattern.get("Regex") or pattern.get("String") or ""]
    return []


def _bpe_pre_name(tj: dict) -> str:
    regexes = _split_regexes(tj.get("pre_tokenizer"))
    if not regexes:
        pre = tj.get("pre_tokenizer") or {}
        if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
            return "gpt-2"
        raise UnsupportedConfigError("byte-level BPE tokenizer without a split regex that mmedge can name for llama.cpp")
    for regex in regexes:
        if regex in BPE_PRE_TOKENIZERS:
            return BPE_PRE_TOKENIZERS[regex]
    raise UnsupportedConfigError(
        f"the tokenizer's pre-tokenizer regex is not one llama.cpp knows by name ({regexes[0][:60]}...); "
        f"known: {sorted(set(BPE_PRE_TOKENIZERS.values()))}. Converting it anyway would tokenize differently from transformers"
    )


def _added_token_types(tokenizer) -> dict[int, int]:
    types = {}
    for tid, added in tokenizer.added_tokens_decoder.items():
        types[int(tid)] = CONTROL if added.special else USER_DEFINED
    return types


def _pad_to(vocab: GgufVocab, n: int) -> None:
    """Checkpoints often pad the embedding matrix past the tokenizer; llama.cpp needs a token per row."""
    for i in range(len(vocab.tokens), n):
        vocab.tokens.append(f"[PAD{i}]")
        vocab.types.append(UNUSED)
        if vocab.scores is not None:
            vocab.scores.append(-1000.0)


def bpe_vocab(tokenizer, n_vocab: int) -> GgufVocab:
    tj = _tokenizer_json(tokenizer)
    model = tj.get("model", {})
    if model.get("type") != "BPE":
        raise UnsupportedConfigError(f"tokenizer.json model type {model.get('type')!r}: expected BPE")
    pre = _bpe_pre_name(tj)
    vocab = dict(model["vocab"])
    for added in tj.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
    by_id = {i: t for t, i in vocab.items()}
    n = max(by_id) + 1
    if n > n_vocab:
        raise UnsupportedConfigError(f"the tokenizer has {n} tokens but the embedding matrix only {n_vocab} rows")
    added_types = _added_token_types(tokenizer)
    tokens, types = [], []
    for i in range(n):
        if i in by_id:
            tokens.append(by_id[i])
            types.append(added_types.get(i, NORMAL))
        else:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    out = GgufVocab(model="gpt2", pre=pre, tokens=tokens, types=types, merges=merges)
    _pad_to(out, n_vocab)
    return out


def metaspace_prepend_scheme(tokenizer) -> str | None:
    """HF's Metaspace prepend scheme: 'first' (transformers' default, legacy=False), 'always', 'never', or None."""
    try:
        tj = _tokenizer_json(tokenizer)
    except UnsupportedConfigError:
        return None
    pres = [tj.get("pre_tokenizer") or {}]
    while pres:
        pre = pres.pop()
        if pre.get("type") == "Sequence":
            pres.extend(pre.get("pretokenizers", []))
        elif pre.get("type") == "Metaspace":
            return pre.get("prepend_scheme", "always")
    return None


def spm_vocab(tokenizer, model_file: Path, n_vocab: int) -> GgufVocab:
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(model_file.read_bytes())
    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    tokens, types, scores = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(float(sp.get_score(i)))
        if sp.is_unknown(i):
            types.append(UNKNOWN)
        elif sp.is_control(i):
            types.append(CONTROL)
        elif sp.is_unused(i):
            types.append(UNUSED)
        elif sp.is_byte(i):
            types.append(BYTE)
        else:
            types.append(NORMAL)
    added_types = _added_token_types(tokenizer)
    for tid, added in sorted(tokenizer.added_tokens_decoder.items()):
        tid = int(tid)
        if tid < len(tokens):
            continue
        if tid != len(tokens):
            raise UnsupportedConfigError(f"added token id {tid} leaves a gap after {len(tokens)} SentencePiece pieces")
        tokens.append(added.content)
        scores.append(-1000.0)
        types.append(added_types[tid])
    # llama.cpp prefixes a space to every text fragment, also after special tokens; HF's
    # 'first' scheme only to the start of the text. For 'first' the GGUF says no prefix and
    # the runtime adds the one space HF adds (manifest prompt.prepend_space).
    scheme = metaspace_prepend_scheme(tokenizer)
    add_prefix = bool(proto.normalizer_spec.add_dummy_prefix) and scheme not in ("first", "never")
    out = GgufVocab(model="llama", pre="default", tokens=tokens, types=types, scores=scores, add_space_prefix=add_prefix)
    if len(out.tokens) > n_vocab:
        raise UnsupportedConfigError(f"the tokenizer has {len(out.tokens)} tokens but the embedding matrix only {n_vocab} rows")
    _pad_to(out, n_vocab)
    return out


def convert_vocab(tokenizer, tokenizer_dir: str | None, n_vocab: int) -> GgufVocab:
    model_file = Path(tokenizer_dir) / "tokenizer.model" if tokenizer_dir else None
    if model_file is not None and model_file.is_file():
        return spm_vocab(tokenizer, model_file, n_vocab)
    return bpe_vocab(tokenizer, n_vocab)
