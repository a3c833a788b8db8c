"""The native GGUF header check (src/gguf_check.cpp, which mmedge_open runs before llama.cpp reads
the LLM; driven here through `mmedge-gguf-check`) refuses every hostile header of
tests/gguf_cases.py with the Python check's message, word for word; refuses every truncation of a
valid file; passes what Python passes (the builder's baseline, a zero-dimension tensor without a
vocabulary, a bundle's real GGUF). In the plain and the sanitizer build alike. Its ggml type table
is Python's. (Hostile GGUFs inside rehashed bundles: tests/native/native_cases.py.)"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mmedge.errors import GgufFormatError
from mmedge.runtime.gguf_check import GGML_TYPES, read_gguf_header

from ..gguf_builder import GGML_F32, GGML_Q8_0, GgufSpec, Tensor, default_kvs
from ..gguf_cases import SPEC_CASES, truncation_points
from .native_helpers import ASAN_BUILD, BUILD, REPO, require_build
from .test_native_asan import SANITIZER_WORDS

BUILDS = {"plain": BUILD / "mmedge-gguf-check", "asan": ASAN_BUILD / "mmedge-gguf-check"}


def _python(path: Path) -> str | None:
    try:
        read_gguf_header(path)
        return None
    except GgufFormatError as e:
        return str(e)


def _native(build: str, paths: list[Path]) -> list[str | None]:
    """One verdict per file: None (passed) or the message."""
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "print_stacktrace=1"}
    proc = subprocess.run([str(require_build(BUILDS[build])), *map(str, paths)], capture_output=True, text=True,
                          errors="replace", timeout=300, env=env)
    assert not any(w in proc.stderr for w in SANITIZER_WORDS), proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == len(paths), proc.stdout[-2000:] + proc.stderr[-2000:]
    verdicts = []
    for path, line in zip(paths, lines):
        if line.startswith("ok\t"):
            assert line == f"ok\t{path}"
            verdicts.append(None)
        else:
            kind, status, message = line.split("\t", 2)
            assert (kind, status) == ("refused", "MMEDGE_ERR_FORMAT"), line
            verdicts.append(message)
    assert proc.returncode == (2 if any(v is not None for v in verdicts) else 0)
    return verdicts


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile-gguf")
    files = {}
    for case, spec, _ in SPEC_CASES:
        files[case] = root / f"{case}.gguf"
        files[case].write_bytes(spec.build())
    return files


@pytest.mark.parametrize("build", BUILDS)
def test_hostile_headers_get_pythons_refusal_word_for_word(hostile_files, build):
    cases = list(hostile_files)
    native = _native(build, [hostile_files[c] for c in cases])
    expected = {case: pattern for case, _, pattern in SPEC_CASES}
    for case, message in zip(cases, native):
        python = _python(hostile_files[case])
        assert python is not None and message is not None, case
        assert re.search(expected[case], message), (case, message)
        assert message == python, case


@pytest.mark.parametrize("build", BUILDS)
def test_every_truncation_is_refused_as_python_refuses_it(tmp_path, build):
    data = GgufSpec().build()
    full = tmp_path / "full.gguf"
    full.write_bytes(data)
    last = list(read_gguf_header(full).tensors.values())[-1]
    paths = []
    # Up to the end of the last tensor's data: the padding after it may go.
    for cut in truncation_points(read_gguf_header(full).data_start + last.offset + last.nbytes):
        paths.append(tmp_path / f"cut-{cut}.gguf")
        paths[-1].write_bytes(data[:cut])
    native = _native(build, paths)
    assert len(paths) > 100
    for path, message in zip(paths, native):
        assert message is not None and message == _python(path), path.name


def test_valid_files_pass_as_in_python(tmp_path, et_bundle):
    baseline = tmp_path / "baseline.gguf"
    baseline.write_bytes(GgufSpec().build())
    no_vocabulary = tmp_path / "no-vocabulary.gguf"
    kvs = [kv for kv in default_kvs() if "tokenizer" not in str(kv.key)]
    tensors = [Tensor("empty", [32, 0], GGML_F32, 0), Tensor("b.weight", [32], GGML_Q8_0, 34)]
    no_vocabulary.write_bytes(GgufSpec(kvs=kvs, tensors=tensors).build())
    paths = [baseline, no_vocabulary, next(Path(et_bundle).glob("*.gguf"))]
    assert all(_python(p) is None for p in paths)
    for build in BUILDS:
        assert _native(build, paths) == [None, None, None]


def test_unreadable_files_are_io_errors(tmp_path):
    proc = subprocess.run([str(require_build(BUILDS["plain"])), str(tmp_path / "missing.gguf")], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout.startswith("refused\tMMEDGE_ERR_IO\t") and "cannot read the GGUF file" in proc.stdout


def test_the_type_table_is_pythons():
    source = (REPO / "native/src/gguf_check.cpp").read_text()
    table = {int(i): (name, int(block), int(nbytes))
             for i, name, block, nbytes in re.findall(r'\{(\d+), \{"(\w+)", (\d+), (\d+)\}\}', source)}
    assert table == GGML_TYPES


def _mutants(folder: Path) -> list[Path]:
    """Seeded damage to the builder's valid file: random byte overwrites, hostile 4- and 8-byte
    integers written at every offset, random bytes after the magic and version."""
    rng = np.random.default_rng(7)
    base = GgufSpec().build()
    datas = []
    for _ in range(600):
        data = bytearray(base)
        for _ in range(int(rng.integers(1, 9))):
            data[int(rng.integers(0, len(base)))] = int(rng.integers(0, 256))
        datas.append(bytes(data))
    for pos in range(len(base)):
        for value, width in ((1 << 31, 4), (0xFFFFFFFF, 4), (1 << 62, 8), ((1 << 64) - 1, 8), (1 << 32, 8)):
            data = bytearray(base)
            data[pos:pos + width] = value.to_bytes(width, "little")[: len(base) - pos]
            datas.append(bytes(data))
    for _ in range(300):
        datas.append(base[:8] + rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8).tobytes())
    paths = []
    for i, data in enumerate(datas):
        paths.append(folder / f"m{i}.gguf")
        paths[-1].write_bytes(data)
    return paths


@pytest.mark.parametrize("build", BUILDS)
def test_damaged_files_get_pythons_verdict(tmp_path, build):
    """A differential check: whatever the damage, native passes what Python passes and refuses what
    Python refuses, with the same message."""
    paths = _mutants(tmp_path)
    native = _native(build, paths)
    differ = [(p.name, n, _python(p)) for p, n in zip(paths, native) if n != _python(p)]
    assert not differ, differ[:3]
    assert sum(n is None for n in native) > 50 and sum(n is not None for n in native) > 1000  # both verdicts occur
