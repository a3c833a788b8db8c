"""Damaged ONNX parts that pass the hash check (the manifest rewritten to match, as an attacker
who controls the bundle would) reach onnxruntime: truncated at many points, bytes overwritten in
the graph's structure and in the weights. Each runs in its own process: it must either run or end
with a named mmedge error (exit 2) — never a crash (a signal) and never a traceback."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ..mmedge.bundle_helpers import part_file, replace_part_rehashed

REPO = Path(__file__).resolve().parents[2]
ROLE = "projector"
TRUNCATIONS = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999]
# (where, seed): `head` overwrites bytes in the first 2 kB (graph structure, names, shapes),
# `body` anywhere (mostly weights), 4 bytes each.
OVERWRITES = [("head", s) for s in range(8)] + [("body", s) for s in range(4)]


def _damaged(original: bytes, case: tuple) -> bytes:
    kind, arg = case
    if kind == "truncate":
        return original[: max(1, int(len(original) * arg))]
    rng = np.random.default_rng(arg)
    data = bytearray(original)
    limit = min(2048, len(data)) if kind == "head" else len(data)
    for pos in rng.integers(0, limit, size=4):
        data[pos] = int(rng.integers(0, 256))
    return bytes(data)


CASES = [("truncate", f) for f in TRUNCATIONS] + OVERWRITES


@pytest.mark.parametrize("case", CASES, ids=[f"{k}-{a}" for k, a in CASES])
def test_damaged_onnx_runs_or_is_refused_never_crashes(fp32_bundle, tmp_path, case):
    bundle = tmp_path / "b"
    shutil.copytree(fp32_bundle, bundle)
    replace_part_rehashed(bundle, ROLE, _damaged(part_file(fp32_bundle, ROLE).read_bytes(), case))
    proc = subprocess.run([sys.executable, "-m", "tests.hostile_runner", str(bundle), ROLE], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 2), f"crashed with {proc.returncode}: {proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    if proc.returncode == 2:
        assert proc.stderr.startswith("error: ") and ("OnnxFormatError" in proc.stderr or "BackendError" in proc.stderr)
    if case[0] == "truncate" and case[1] <= 0.5:
        assert proc.returncode == 2  # half a graph is never a runnable model
