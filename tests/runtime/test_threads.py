"""threads=0 means the cores this process may run on, not the machine's: a process pinned to one
core (taskset, a container's cpuset) decodes with one thread."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mmedge.runtime.threads import resolve_threads, usable_cores


def test_an_explicit_count_is_kept():
    assert resolve_threads(3) == 3 and resolve_threads(1) == 1


def test_zero_is_the_affinity_mask():
    assert resolve_threads(0) == usable_cores() == len(os.sched_getaffinity(0))


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS (Linux only)")
def test_a_pinned_process_uses_one_thread(fp32_bundle):
    code = ("import os, sys; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
            "from mmedge.runtime.pipeline import Pipeline; p = Pipeline(sys.argv[1]); print(p.llm.n_threads); p.close()")
    out = subprocess.run([sys.executable, "-c", code, str(fp32_bundle)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "1"
