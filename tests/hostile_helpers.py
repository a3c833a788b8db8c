"""Damaging a compiled part the way an attacker who controls the bundle would (bytes changed, the
manifest's hash rewritten to match) and running it in its own process (tests/hostile_runner.py),
so that a crash in a native library is a failed assertion, not the end of the test run."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TRUNCATIONS = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999]
# (where, seed): `head` overwrites 4 bytes in the first 2 kB (structure, names, shapes), `body`
# anywhere (mostly weights).
OVERWRITES = [("head", s) for s in range(8)] + [("body", s) for s in range(4)]
CASES = [("truncate", f) for f in TRUNCATIONS] + OVERWRITES
CASE_IDS = [f"{kind}-{arg}" for kind, arg in CASES]
# A smaller set for parts whose runner imports torch (ExecuTorch's Python runtime: ~10 s per process).
FEW_CASES = [("truncate", 0.01), ("truncate", 0.5), ("truncate", 0.99)] + OVERWRITES[:4] + [("body", 0)]
FEW_CASE_IDS = [f"{kind}-{arg}" for kind, arg in FEW_CASES]


def damaged(original: bytes, case: tuple) -> bytes:
    kind, arg = case
    if kind == "truncate":
        return original[: max(1, int(len(original) * arg))]
    rng = np.random.default_rng(arg)
    data = bytearray(original)
    limit = min(2048, len(data)) if kind == "head" else len(data)
    for pos in rng.integers(0, limit, size=4):
        data[pos] = int(rng.integers(0, 256))
    return bytes(data)


def run_damaged_part(bundle: Path, role: str, case: tuple, workdir: Path) -> subprocess.CompletedProcess:
    """A copy of `bundle` with `role`'s file damaged by `case` (hash rewritten), opened and run once
    in a fresh process."""
    from .mmedge.bundle_helpers import part_file, replace_part_rehashed

    copy = workdir / "b"
    shutil.copytree(bundle, copy)
    replace_part_rehashed(copy, role, damaged(part_file(bundle, role).read_bytes(), case))
    return subprocess.run([sys.executable, "-m", "tests.hostile_runner", str(copy), role], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def assert_ran_or_refused(proc: subprocess.CompletedProcess, errors: tuple[str, ...]) -> None:
    assert proc.returncode in (0, 2), f"crashed with {proc.returncode}: {proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    if proc.returncode == 2:  # native libraries may log first; the last line is the runner's
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and any(e in last for e in errors), proc.stderr[-2000:]
