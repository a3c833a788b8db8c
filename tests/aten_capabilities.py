"""Run code under each of torch's CPU kernel sets (ATEN_CPU_CAPABILITY), in child processes.

torch picks its vectorised kernels at start-up from the CPU (default < avx2 < avx512 on x86), and
a numpy emulation of a torch kernel, or a numeric margin measured against torch, may hold under
one set and not another. A test that must hold on every CPU runs its torch side under every set
this CPU can execute, and checks that the child really ran under the one asked for.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

# Ordered: a CPU that runs one runs those before it.
X86_CAPABILITIES = ("default", "avx2", "avx512")


@functools.cache
def _native_capability() -> str:
    """torch's own choice on this CPU, also when this process runs under a forced ATEN_CPU_CAPABILITY."""
    if "ATEN_CPU_CAPABILITY" not in os.environ:
        import torch

        return torch.backends.cpu.get_cpu_capability().lower()
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    proc = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().lower()


def aten_capabilities() -> list[str]:
    """Every capability this CPU can run: on x86, from "default" up to torch's own choice here."""
    native = _native_capability()
    if native not in X86_CAPABILITIES:  # another architecture: its own set and the portable one
        return ["default", native] if native != "default" else ["default"]
    return list(X86_CAPABILITIES[: X86_CAPABILITIES.index(native) + 1])


def run_under(capability: str, code: str, *args: str, timeout: float = 600) -> dict:
    """Run `code` (which prints one JSON object last) in a child with ATEN_CPU_CAPABILITY set; the
    result carries "capability", what torch reported in the child."""
    prologue = "import json, sys, torch\n_CAPABILITY = torch.backends.cpu.get_cpu_capability().lower()\n"
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability}
    proc = subprocess.run([sys.executable, "-c", prologue + code, *args], capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result.get("capability") == capability, (capability, result.get("capability"))
    return result
