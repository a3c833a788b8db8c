"""ExecuTorch's thread pool is one per process and XNNPACK keeps a pointer to it from load on. A
second handle asking for another size must not resize it under the first (that freed the pool:
AddressSanitizer reported heap-use-after-free on the first handle's next run before the fix).
Both handles, the first again, and a handle opened after both closed give the same greedy tokens,
and the sanitizers report nothing."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from .native_helpers import ASAN_BUILD, REPO, require_build
from .test_native_asan import SANITIZER_WORDS


def _sanitizer_preload(lib) -> str:
    """The sanitizer runtimes the ASan build links, preloaded so that Python can dlopen it."""
    linked = subprocess.run(["ldd", str(lib)], capture_output=True, text=True).stdout
    found = re.findall(r"=> (\S*lib(?:asan|ubsan)\.so\S*)", linked)
    assert len(found) == 2, f"{lib} does not link libasan and libubsan: {linked}"
    return " ".join(found)


def test_handles_with_other_thread_counts_share_the_pool_safely(et_bundle):
    lib = require_build(ASAN_BUILD / "libmmedge.so")
    env = {**os.environ, "LD_PRELOAD": _sanitizer_preload(lib), "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0",
           "UBSAN_OPTIONS": "print_stacktrace=1"}
    proc = subprocess.run([sys.executable, "-m", "tests.native.shared_pool_runner", str(lib), str(et_bundle)], cwd=REPO,
                          capture_output=True, text=True, errors="replace", timeout=300, env=env)
    assert not any(w in proc.stderr for w in SANITIZER_WORDS), proc.stderr[-4000:]
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(runs["a"]) == 8 and runs["b"] == runs["a"] and runs["a_again"] == runs["a"] and runs["c"] == runs["a"]
