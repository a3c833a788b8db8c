"""mmedge.cpu: the SIMD features that pick kernels, read from /proc/cpuinfo, and how int8 dot
products are done there (the saturating kind or not)."""
from __future__ import annotations

import platform

import pytest

from mmedge.cpu import INT8_DOT, cpu_facts

X86 = "avx sse4_2 fma f16c"


@pytest.mark.parametrize("flags, dot, saturates, simd", [
    (f"{X86} avx2", "avx2", True, ["sse4_2", "avx", "f16c", "fma", "avx2"]),
    (f"{X86} avx2 avx512f avx512bw avx512vl", "avx512bw", True, None),  # Skylake-SP: AVX-512 without VNNI
    (f"{X86} avx2 avx512f avx512bw avx512vl avx512_vnni avx512_bf16", "avx512-vnni", False, None),
    (f"{X86} avx2 avx_vnni", "avx-vnni", False, None),  # Alder Lake: VNNI without AVX-512
    (f"{X86} avx2 avx512f avx512bw avx512_vnni amx_tile amx_int8", "amx", False, None),
    ("sse4_2", "scalar", False, ["sse4_2"]),
])
def test_x86_kinds(tmp_path, monkeypatch, flags, dot, saturates, simd):
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu {flags}\n\nprocessor\t: 1\nflags\t: none\n")
    facts = cpu_facts(str(info))
    assert (facts.model, facts.architecture, facts.int8_dot, facts.int8_u8s8_saturates) == ("Test CPU", "x86_64", dot, saturates)
    if simd is not None:
        assert list(facts.simd) == simd
    assert facts.to_dict()["simd"] == list(facts.simd) and dot in facts.summary()


def test_arm64_kinds(tmp_path, monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nFeatures\t: fp asimd asimdhp asimddp\nCPU implementer\t: 0x41\n\n")
    facts = cpu_facts(str(info))
    assert (facts.architecture, facts.int8_dot, facts.simd) == ("aarch64", "arm-dotprod", ("asimd", "asimdhp", "asimddp"))
    info.write_text("processor\t: 0\nFeatures\t: fp asimd i8mm asimddp\nModel\t: Raspberry Pi 5\n")
    assert cpu_facts(str(info)).int8_dot == "arm-i8mm" and cpu_facts(str(info)).model == "Raspberry Pi 5"


def test_no_cpuinfo_is_scalar_not_an_error(tmp_path):
    facts = cpu_facts(str(tmp_path / "absent"))
    assert facts.int8_dot == "scalar" and facts.simd == () and facts.model


def test_this_machine():
    facts = cpu_facts()
    assert facts.int8_dot in {name for name, _, _ in INT8_DOT} | {"scalar"}
