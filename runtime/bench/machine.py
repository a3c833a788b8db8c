"""What a bench worker ran on: enough to tell two result files apart (CPU, cores, OS, versions,
llama.cpp's build flags), read from the worker's own process and install."""
from __future__ import annotations

import os
import platform
from importlib import metadata

import mmedge
from mmedge.cpu import cpu_facts

from ..llamacpp import system_info
from ..threads import usable_cores

# Distribution names whose versions decide the numbers; None in the report when not installed.
PACKAGES = {"numpy": "numpy", "onnxruntime": "onnxruntime", "llama_cpp_python": "llama_cpp_python",
            "pillow": "pillow", "av": "av"}


def memory_total_mib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"mmedge": mmedge.__version__}
    for key, dist in PACKAGES.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    return out


def machine_info() -> dict:
    cpu = cpu_facts()
    return {
        "cpu": cpu.model,
        "architecture": platform.machine(),
        # The SIMD features that pick kernels, with every result (numbers differ between CPUs).
        "cpu_features": cpu.to_dict(),
        "logical_cores": os.cpu_count() or 1,
        "usable_cores": usable_cores(),
        "memory_total_mib": memory_total_mib(),
        "os": platform.system(),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": versions(),
        "llama_cpp_system_info": system_info(),
    }
