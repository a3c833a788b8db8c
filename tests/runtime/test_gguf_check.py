"""The GGUF header check: real files pass and agree with the gguf package's reader; a corpus of
hostile headers, built field by field, is refused with GgufFormatError naming the field; every
truncation of a valid file is refused; and a hostile GGUF inside a bundle whose manifest hashes
were rewritten to match stops `mmedge run` with the named error before llama.cpp loads it."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmedge.errors import GgufFormatError
from mmedge.runtime.gguf_check import GGML_TYPES, read_gguf_header

from ..gguf_builder import GGML_F32, GGML_Q8_0, GgufSpec, Tensor, default_kvs
from ..gguf_cases import SPEC_CASES, truncation_points


def write(tmp_path: Path, data: bytes, name: str = "m.gguf") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


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



def test_every_truncation_is_refused(tmp_path):
    data = GgufSpec().build()
    h = read_gguf_header(write(tmp_path, data))
    last = list(h.tensors.values())[-1]
    end = h.data_start + last.offset + last.nbytes  # after it only the last tensor's padding, which may go
    assert read_gguf_header(write(tmp_path, data[:end])).tensors.keys() == h.tensors.keys()
    points = truncation_points(end)
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
