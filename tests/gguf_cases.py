"""Hostile GGUF headers, built field by field, with the error each must be refused with: shared by
the Python check's tests (tests/runtime/test_gguf_check.py) and the native check's
(tests/native/test_native_gguf_check.py), which must refuse them all with the same messages."""
from __future__ import annotations

import struct
from dataclasses import replace

from .gguf_builder import (ARRAY, BOOL, F32, I32, KV, STRING, U8, U32, U64, GgufSpec, Tensor, array, default_kvs,
                           default_tensors, gguf_string, scalar)


def kvs_with(key: str, vtype: int, payload: bytes) -> list[KV]:
    """The default key/values with `key` replaced (or added)."""
    kvs = [kv for kv in default_kvs() if kv.key != key]
    return kvs + [KV(key, vtype, payload)]


def tensors_with(index: int, **changes) -> list[Tensor]:
    tensors = default_tensors()
    tensors[index] = replace(tensors[index], **changes)
    return tensors


# (case id, spec or bytes-maker, regex the error must match)
SPEC_CASES = [
    ("magic-wrong", GgufSpec(magic=b"GGUG"), "not the GGUF magic"),
    ("magic-zero", GgufSpec(magic=b"\0\0\0\0"), "not the GGUF magic"),
    ("magic-lowercase", GgufSpec(magic=b"gguf"), "not the GGUF magic"),
    ("version-0", GgufSpec(version=0), "version 0"),
    ("version-1", GgufSpec(version=1), "version 1"),
    ("version-4", GgufSpec(version=4), "version 4"),
    ("version-max", GgufSpec(version=2**32 - 1), "version 4294967295"),
    ("version-big-endian", GgufSpec(version=0x03000000), "big-endian"),
    ("tensor-count-2^63", GgufSpec(n_tensors=2**63), "cannot fit"),
    ("tensor-count-max", GgufSpec(n_tensors=2**64 - 1), "cannot fit"),
    ("tensor-count-plus-one", GgufSpec(n_tensors=3), "tensor|bytes"),
    ("kv-count-2^63", GgufSpec(n_kv=2**63), "cannot fit"),
    ("kv-count-max", GgufSpec(n_kv=2**64 - 1), "cannot fit"),
    ("kv-count-plus-one", GgufSpec(n_kv=7), "key|bytes|type"),
    ("kv-count-minus-one", GgufSpec(n_kv=5), "."),  # the last KV is read as a tensor: refused
    ("key-empty", GgufSpec(kvs=[KV("", U32, scalar(U32, 1))] + default_kvs()), "key is empty"),
    ("key-length-2^63", GgufSpec(kvs=[KV("a.b", U32, scalar(U32, 1), key_length=2**63)]), "more than the 65535 allowed"),
    ("key-length-64k", GgufSpec(kvs=[KV("k" * 65536, U32, scalar(U32, 1))]), "more than the 65535 allowed"),
    ("key-length-past-end", GgufSpec(kvs=[KV("a.b", U32, scalar(U32, 1), key_length=10_000)]), "bytes but"),
    ("key-not-utf8", GgufSpec(kvs=[KV(b"\xff\xfe", U32, scalar(U32, 1))] + default_kvs()), "not UTF-8"),
    ("key-duplicate", GgufSpec(kvs=default_kvs() + [KV("general.architecture", STRING, gguf_string("x"))]), "appears twice"),
    ("value-type-13", GgufSpec(kvs=kvs_with("x.y", 13, b"\0" * 8)), "value type 13"),
    ("value-type-max", GgufSpec(kvs=kvs_with("x.y", 2**32 - 1, b"\0" * 8)), "value type 4294967295"),
    ("bool-2", GgufSpec(kvs=kvs_with("x.flag", BOOL, scalar(U8, 2))), "bool holding 2"),
    ("bool-255", GgufSpec(kvs=kvs_with("x.flag", BOOL, scalar(U8, 255))), "bool holding 255"),
    ("string-length-2^63", GgufSpec(kvs=kvs_with("x.s", STRING, gguf_string("abc", 2**63))), "bytes but"),
    ("string-length-max", GgufSpec(kvs=kvs_with("x.s", STRING, gguf_string("abc", 2**64 - 1))), "bytes but"),
    ("string-length-past-end", GgufSpec(kvs=kvs_with("x.s", STRING, gguf_string("abc", 1 << 20))), "bytes but"),
    ("array-of-arrays", GgufSpec(kvs=kvs_with("x.a", ARRAY, struct.pack("<IQ", ARRAY, 1) + array(U8, [1]))),
     "array of arrays"),
    ("array-item-type-99", GgufSpec(kvs=kvs_with("x.a", ARRAY, struct.pack("<IQ", 99, 1) + b"\0")), "value type 99"),
    ("array-count-2^62-u8", GgufSpec(kvs=kvs_with("x.a", ARRAY, array(U8, [1, 2], count=2**62))), "items of"),
    ("array-count-max-u64", GgufSpec(kvs=kvs_with("x.a", ARRAY, array(U64, [1], count=2**64 - 1))), "items of"),
    ("array-count-2^61-strings", GgufSpec(kvs=kvs_with("x.a", ARRAY, array(STRING, ["a"], count=2**61))), "strings of"),
    ("array-string-item-length-huge", GgufSpec(kvs=kvs_with("x.a", ARRAY, struct.pack("<IQ", STRING, 1)
                                                             + gguf_string("ab", 2**62))), "past the end"),
    ("alignment-0", GgufSpec(kvs=kvs_with("general.alignment", U32, scalar(U32, 0))), "power of two"),
    ("alignment-3", GgufSpec(kvs=kvs_with("general.alignment", U32, scalar(U32, 3))), "power of two"),
    ("alignment-48", GgufSpec(kvs=kvs_with("general.alignment", U32, scalar(U32, 48))), "power of two"),
    ("alignment-u64", GgufSpec(kvs=kvs_with("general.alignment", U64, scalar(U64, 32))), "must be uint32"),
    ("alignment-string", GgufSpec(kvs=kvs_with("general.alignment", STRING, gguf_string("32"))), "must be uint32"),
    ("alignment-2^31", GgufSpec(kvs=kvs_with("general.alignment", U32, scalar(U32, 2**31))), "past the end"),
    ("alignment-512-file-packed-at-32", GgufSpec(kvs=kvs_with("general.alignment", U32, scalar(U32, 512))),
     "must start at 512|past the end"),
    ("tensor-name-empty", GgufSpec(tensors=tensors_with(0, name="")), "tensor name is empty"),
    ("tensor-name-duplicate", GgufSpec(tensors=tensors_with(1, name="a.weight")), "listed twice"),
    ("tensor-name-not-utf8", GgufSpec(tensors=tensors_with(0, name=b"\xc3\x28")), "not UTF-8"),
    ("tensor-dims-5", GgufSpec(tensors=tensors_with(0, dims=[32, 1, 1, 1, 2])), "5 dimensions"),
    ("tensor-n-dims-lies-max", GgufSpec(tensors=tensors_with(0, n_dims=2**32 - 1)), "4294967295 dimensions"),
    ("tensor-n-dims-lies-3", GgufSpec(tensors=tensors_with(0, n_dims=3)), "."),
    ("tensor-dim-2^63", GgufSpec(tensors=tensors_with(0, dims=[32, 2**63])), "at most 2\\^62"),
    ("tensor-dim-max", GgufSpec(tensors=tensors_with(0, dims=[2**64 - 1])), "at most 2\\^62"),
    ("tensor-dims-product-overflows-int64", GgufSpec(tensors=tensors_with(0, dims=[2**31, 2**31, 2**31])), "past the end"),
    ("tensor-dims-product-2^62", GgufSpec(tensors=tensors_with(0, dims=[32, 2**57])), "past the end"),
    ("tensor-type-4-removed", GgufSpec(tensors=tensors_with(0, type_id=4)), "ggml type 4"),
    ("tensor-type-31-removed", GgufSpec(tensors=tensors_with(0, type_id=31)), "ggml type 31"),
    ("tensor-type-99", GgufSpec(tensors=tensors_with(0, type_id=99)), "ggml type 99"),
    ("tensor-type-max", GgufSpec(tensors=tensors_with(0, type_id=2**32 - 1)), "ggml type 4294967295"),
    ("tensor-q8-row-31", GgufSpec(tensors=tensors_with(1, dims=[31])), "not whole blocks of 32"),
    ("tensor-q8-row-1", GgufSpec(tensors=tensors_with(1, dims=[1])), "not whole blocks of 32"),
    ("tensor-offset-misaligned", GgufSpec(tensors=tensors_with(1, offset=257)), "must start at 256"),
    ("tensor-offset-overlaps", GgufSpec(tensors=tensors_with(1, offset=0)), "must start at 256"),
    ("tensor-offset-gap", GgufSpec(tensors=tensors_with(1, offset=512)), "must start at 256"),
    ("tensor-offset-first-not-0", GgufSpec(tensors=tensors_with(0, offset=32)), "must start at 0"),
    ("tensor-offset-2^63", GgufSpec(tensors=tensors_with(1, offset=2**63)), "must start at"),
    ("tensor-data-past-end", GgufSpec(tensors=tensors_with(1, dims=[64])), "past the end"),
    ("vocab-scores-short", GgufSpec(kvs=kvs_with("tokenizer.ggml.scores", ARRAY, array(F32, [0.0, 1.0]))),
     "scores has 2 entries but the vocabulary has 3"),
    ("vocab-types-long", GgufSpec(kvs=kvs_with("tokenizer.ggml.token_type", ARRAY, array(I32, [1, 1, 1, 1]))),
     "token_type has 4 entries"),
    ("vocab-scores-not-array", GgufSpec(kvs=kvs_with("tokenizer.ggml.scores", F32, scalar(F32, 1.0))), "not an array"),
    ("vocab-tokens-not-strings", GgufSpec(kvs=kvs_with("tokenizer.ggml.tokens", ARRAY, array(I32, [1, 2, 3]))),
     "array of strings"),
    ("vocab-tokens-scalar", GgufSpec(kvs=kvs_with("tokenizer.ggml.tokens", U32, scalar(U32, 3))), "array of strings"),
    ("vocab-empty", GgufSpec(kvs=[kv for kv in default_kvs() if "scores" not in str(kv.key) and "type" not in str(kv.key)
                                  and "bos" not in str(kv.key) and "tokens" not in str(kv.key)]
                         + [KV("tokenizer.ggml.tokens", ARRAY, array(STRING, []))]), "is empty"),
    ("bos-id-out-of-range", GgufSpec(kvs=kvs_with("tokenizer.ggml.bos_token_id", U32, scalar(U32, 3))),
     "outside the vocabulary"),
    ("eos-id-max", GgufSpec(kvs=kvs_with("tokenizer.ggml.eos_token_id", U32, scalar(U32, 2**32 - 1))),
     "outside the vocabulary"),
    ("pad-id-negative", GgufSpec(kvs=kvs_with("tokenizer.ggml.padding_token_id", I32, scalar(I32, -1))),
     "outside the vocabulary"),
    ("eot-id-float", GgufSpec(kvs=kvs_with("tokenizer.ggml.eot_token_id", F32, scalar(F32, 1.0))), "outside the vocabulary"),
    ("unk-id-string", GgufSpec(kvs=kvs_with("tokenizer.ggml.unknown_token_id", STRING, gguf_string("1"))),
     "outside the vocabulary"),
    ("mask-id-bool", GgufSpec(kvs=kvs_with("tokenizer.ggml.mask_token_id", BOOL, scalar(U8, 1))), "outside the vocabulary"),
]


def truncation_points(size: int) -> list[int]:
    """Every byte of the first 64, then every 7th byte to the end (all header fields are cut somewhere)."""
    return sorted(set(range(0, 64)) | set(range(64, size, 7)))

