"""The GGUF header check: real files pass and agree with the gguf package's reader; a corpus of
hostile headers, built field by field, is refused with GgufFormatError naming the field; every
truncation of a valid file is refused; and a hostile GGUF inside a bundle whose manifest hashes
were rewritten to match stops `mmedge run` with the named error before llama.cpp loads it."""
from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from mmedge.errors import GgufFormatError
from mmedge.runtime.gguf_check import GGML_TYPES, read_gguf_header

from ..gguf_builder import (ARRAY, BOOL, F32, GGML_F32, GGML_Q8_0, I32, KV, STRING, U8, U32, U64, GgufSpec, Tensor,
                            array, default_kvs, default_tensors, gguf_string, scalar)


def write(tmp_path: Path, data: bytes, name: str = "m.gguf") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


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


def test_the_builders_baseline_is_valid(tmp_path):
    h = read_gguf_header(write(tmp_path, GgufSpec().build()))
    assert (h.version, h.alignment) == (3, 32)
    assert [(t.name, t.dims, t.type_name, t.offset, t.nbytes) for t in h.tensors.values()] == [
        ("a.weight", (32, 2), "F32", 0, 256), ("b.weight", (32,), "Q8_0", 256, 34)]
    assert h.metadata["tokenizer.ggml.tokens"].count == 3 and h.metadata["general.architecture"] == "llama"
    assert h.data_start % 32 == 0 and h.data_start + 256 + 34 <= h.file_size


@pytest.mark.parametrize("case, spec, expected", SPEC_CASES, ids=[c[0] for c in SPEC_CASES])
def test_hostile_headers_are_refused_by_name(tmp_path, case, spec, expected):
    with pytest.raises(GgufFormatError, match=expected) as info:
        read_gguf_header(write(tmp_path, spec.build()))
    assert "not a valid GGUF file" in str(info.value) and "re-export" in str(info.value)


def _truncation_points(size: int) -> list[int]:
    """Every byte of the first 64, then every 7th byte to the end (all header fields are cut somewhere)."""
    return sorted(set(range(0, 64)) | set(range(64, size, 7)))


def test_every_truncation_is_refused(tmp_path):
    data = GgufSpec().build()
    h = read_gguf_header(write(tmp_path, data))
    last = list(h.tensors.values())[-1]
    end = h.data_start + last.offset + last.nbytes  # after it only the last tensor's padding, which may go
    assert read_gguf_header(write(tmp_path, data[:end])).tensors.keys() == h.tensors.keys()
    points = _truncation_points(end)
    assert len(points) > 100
    for cut in points:
        with pytest.raises(GgufFormatError):
            read_gguf_header(write(tmp_path, data[:cut]))


def test_zero_dimension_and_no_vocabulary_are_legal(tmp_path):
    """llama.cpp accepts empty tensors and files without a tokenizer (an mmproj): so does the check."""
    kvs = [kv for kv in default_kvs() if "tokenizer" not in str(kv.key)]
    tensors = [Tensor("empty", [32, 0], GGML_F32, 0), Tensor("b.weight", [32], GGML_Q8_0, 34)]
    h = read_gguf_header(write(tmp_path, GgufSpec(kvs=kvs, tensors=tensors).build()))
    assert h.tensors["empty"].nbytes == 0 and h.tensors["b.weight"].offset == 0


def test_type_table_agrees_with_the_gguf_package():
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    # The gguf package on PyPI still lists Q8_1 at 40 bytes (float d and s); ggml's block_q8_1 is two
    # halves + 32 quants = 36 (static_assert in ggml-common.h; llama.cpp's own gguf-py says 2 + 2 + 32).
    known_stale = {"Q8_1": (32, 40)}
    known = {t.value for t in GGMLQuantizationType}
    for type_id, (name, block, nbytes) in GGML_TYPES.items():
        if type_id not in known:  # newer than this gguf package (Q2_0): checked against llama_cpp below
            continue
        t = GGMLQuantizationType(type_id)
        assert t.name == name, name
        assert GGML_QUANT_SIZES[t] == known_stale.get(name, (block, nbytes)), name
    missing = {t.name for t in GGMLQuantizationType if t.value not in GGML_TYPES}
    assert not missing, f"ggml types the check does not know: {missing}"


def test_type_table_holds_every_type_the_bundled_llama_cpp_has():
    import llama_cpp

    engine = {name[len("GGML_TYPE_"):]: getattr(llama_cpp, name) for name in dir(llama_cpp)
              if name.startswith("GGML_TYPE_") and name != "GGML_TYPE_COUNT"}
    assert len(engine) > 25
    for name, type_id in engine.items():
        assert GGML_TYPES[type_id][0] == name
    assert max(GGML_TYPES) < llama_cpp.GGML_TYPE_COUNT


def test_real_bundle_gguf_agrees_with_the_gguf_package(fp32_bundle):
    from gguf import GGUFReader

    path = next(fp32_bundle.glob("*.gguf"))
    ours = read_gguf_header(path)
    theirs = GGUFReader(str(path))
    assert list(ours.tensors) == [t.name for t in theirs.tensors]
    for t in theirs.tensors:
        mine = ours.tensors[t.name]
        assert mine.dims == tuple(int(d) for d in t.shape) and mine.type_id == int(t.tensor_type)
        assert ours.data_start + mine.offset == int(t.data_offset) and mine.nbytes == int(t.n_bytes)
    assert set(ours.metadata) == {k for k in theirs.fields if not k.startswith("GGUF.")}


# -- the whole path: a bundle whose manifest was rewritten to match a hostile GGUF ----------------
NATIVE_CASES = ["tensor-count-2^63", "string-length-2^63", "array-count-2^61-strings", "tensor-dim-2^63",
                "tensor-dims-product-overflows-int64", "tensor-type-99", "tensor-offset-2^63", "tensor-data-past-end",
                "bos-id-out-of-range", "vocab-scores-short", "alignment-0", "key-duplicate"]


@pytest.fixture(scope="module")
def hostile_bundles(fp32_bundle, tmp_path_factory):
    """One copy of the fp32 bundle per case, its GGUF replaced and the manifest's sha256/size updated:
    what an attacker who rewrites the manifest can hand a user."""
    from ..mmedge.bundle_helpers import replace_part_rehashed

    specs = {case: spec for case, spec, _ in SPEC_CASES}
    root = tmp_path_factory.mktemp("hostile")
    out = {}
    for case in NATIVE_CASES:
        dst = root / case
        shutil.copytree(fp32_bundle, dst)
        replace_part_rehashed(dst, "llm", specs[case].build())
        out[case] = dst
    return out


@pytest.mark.parametrize("case", NATIVE_CASES)
def test_run_refuses_a_hostile_gguf_before_llama_cpp(hostile_bundles, photos, tmp_path, case):
    """In a subprocess, so a crash inside llama.cpp would show as a signal instead of ending the tests."""
    image = tmp_path / "cat.png"
    photos["chelsea"].save(image)
    proc = subprocess.run([sys.executable, "-m", "mmedge.cli", "run", str(hostile_bundles[case]), "--image", str(image),
                           "--prompt", "Hi", "--max-tokens", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "not a valid GGUF file" in proc.stderr and "Traceback" not in proc.stderr
