"""The CPU in the terms that change numbers: the SIMD features among which onnxruntime, XNNPACK,
llama.cpp and torch pick their kernels.

Recorded beside every verification report (the manifest's `verification.machine`) and every
benchmark result, because the same bundle can compute other numbers, at another speed, on another
CPU: onnxruntime's int8 kernels saturate an int16 sum on AVX2 and not with VNNI (see
`quantize/onnx_quant.py`), torch picks its kernels by ATEN_CPU_CAPABILITY. Standard library only.
"""
from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass

# /proc/cpuinfo flags worth recording, per architecture: each one selects other kernels somewhere.
SIMD_FLAGS: dict[str, tuple[str, ...]] = {
    "x86_64": ("sse4_2", "avx", "f16c", "fma", "avx2", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
               "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16"),
    "aarch64": ("asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2", "sme"),
}
# How an int8 x int8 dot product is done, the first row whose flags the CPU has all of:
# (name, flags, whether onnxruntime's u8 x s8 kernel adds product pairs into a saturating int16).
INT8_DOT: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("amx", ("amx_int8",), False),
    ("avx512-vnni", ("avx512_vnni",), False),
    ("avx-vnni", ("avx_vnni",), False),
    ("avx512bw", ("avx512bw",), True),  # vpmaddubsw, 512 bits wide
    ("avx2", ("avx2",), True),  # vpmaddubsw
    ("arm-i8mm", ("i8mm",), False),
    ("arm-dotprod", ("asimddp",), False),
    ("neon", ("asimd",), False),
)
# The architecture names platform.machine() gives for the keys of SIMD_FLAGS.
_ARCH_ALIASES = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}
_CPUINFO_KEYS = ("flags", "Features")  # x86, arm64


@dataclass(frozen=True)
class CpuFacts:
    model: str
    architecture: str
    simd: tuple[str, ...]  # the SIMD_FLAGS this CPU has, in table order
    int8_dot: str  # the INT8_DOT row it matches, or "scalar"
    int8_u8s8_saturates: bool

    def to_dict(self) -> dict:
        return {**asdict(self), "simd": list(self.simd)}

    def summary(self) -> str:
        return f"{self.model} ({self.architecture}; int8 dot: {self.int8_dot})"


def _cpuinfo(path: str = "/proc/cpuinfo") -> dict[str, str]:
    """The first processor's fields (all processors of a machine share the flags we read)."""
    fields: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break
                    continue
                key, sep, value = line.partition(":")
                if sep:
                    fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_model(fields: dict[str, str] | None = None) -> str:
    """/proc/cpuinfo's "model name" (Linux, x86), else its "Hardware"/"Model" line (ARM boards),
    else what platform knows."""
    fields = _cpuinfo() if fields is None else fields
    for key in ("model name", "Hardware", "Model", "cpu model"):
        if fields.get(key):
            return fields[key]
    return platform.processor() or platform.machine() or "unknown"


def cpu_facts(cpuinfo_path: str = "/proc/cpuinfo") -> CpuFacts:
    fields = _cpuinfo(cpuinfo_path) if os.path.exists(cpuinfo_path) else {}
    arch = _ARCH_ALIASES.get(platform.machine().lower(), platform.machine() or "unknown")
    present = set(next((fields[k] for k in _CPUINFO_KEYS if k in fields), "").split())
    simd = tuple(f for f in SIMD_FLAGS.get(arch, ()) if f in present)
    dot, saturates = next(((name, sat) for name, need, sat in INT8_DOT if set(need) <= present), ("scalar", False))
    return CpuFacts(model=cpu_model(fields), architecture=arch, simd=simd, int8_dot=dot, int8_u8s8_saturates=saturates)
