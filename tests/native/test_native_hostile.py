"""Bad inputs through the C ABI (impossible images, markers that do not match, prompts past the
context, out-of-range parameters) come back as the named status with a message, never as a crash:
each runs in its own process. Null pointers are checked in this process. The malformed bundles
(native_cases.BUNDLE_CASES) go through the ABI in test_native_asan.py, under the sanitizers."""
from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from .native_cases import INPUT_CASES
from .native_helpers import LIB, REPO, require_build


def _run(bundle, case=None) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "tests.native.native_runner", str(require_build(LIB)), str(bundle)] + ([case] if case else [])
    return subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=120, cwd=REPO)


def _status(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"the runner died (signal {-proc.returncode})" if proc.returncode < 0 else proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1]


def test_a_missing_folder_is_a_status_code(tmp_path):
    assert _status(_run(tmp_path / "nowhere")) == "MMEDGE_ERR_MANIFEST"


@pytest.mark.parametrize("case", INPUT_CASES)
def test_a_bad_input_is_a_status_code(et_bundle, case):
    proc = _run(et_bundle, case)
    assert _status(proc) == INPUT_CASES[case][3], proc.stderr


def test_null_pointers_and_bad_sizes_are_refused(native, et_bundle):
    from .native_helpers import binding

    lib = native.lib
    no_callback = binding().TokenCallback()  # a NULL function pointer
    handle = ctypes.c_void_p()
    assert lib.mmedge_open(None, None, ctypes.byref(handle)) == 1 and not handle
    assert "must not be NULL" in native.last_error()
    params = lib.mmedge_params_default()
    params.n_batch = 0
    assert lib.mmedge_open(str(et_bundle).encode(), ctypes.byref(params), ctypes.byref(handle)) == 1 and not handle
    n = ctypes.c_int32(-1)
    assert lib.mmedge_generate(None, None, 0, b"Hi", None, no_callback, None, None, 0, ctypes.byref(n), None) == 1
    with native.open(et_bundle, n_threads=1) as ctx:
        h = ctx.handle
        assert lib.mmedge_generate(h, None, 1, b"<image>Hi", None, no_callback, None, None, 0, ctypes.byref(n), None) == 1
        assert lib.mmedge_generate(h, None, -1, b"Hi", None, no_callback, None, None, 0, ctypes.byref(n), None) == 1
        assert lib.mmedge_generate(h, None, 0, None, None, no_callback, None, None, 0, ctypes.byref(n), None) == 1
        null_pixels = binding().Image(None, 20, 20, 60)
        assert lib.mmedge_generate(h, ctypes.byref(null_pixels), 1, b"Hi", None, no_callback, None, None, 0, ctypes.byref(n), None) == 8
        assert "rgb is NULL" in native.last_error()
        assert lib.mmedge_generate(h, None, 0, b"Hi", None, no_callback, None, None, -1, ctypes.byref(n), None) == 1
        status = lib.mmedge_generate(h, None, 0, b"Hi", None, no_callback, None, None, 0, ctypes.byref(n), None)
        assert status == 0 and n.value > 0  # default parameters; no output buffer: only the count
