"""Placement: `--device cpu|gpu|npu|auto` -> a concrete provider for each part.

Each artifact kind has, per device, the providers that would serve it in order of preference
(data, below). A provider is used only if the installed build has it. When none is present, the
part falls back to the CPU with a note (default) or the run stops with `DeviceError` (strict).
The provider each part really runs on is recorded in the run's stats.
"""
from __future__ import annotations

from dataclasses import dataclass

from mmedge.errors import DeviceError

DEVICES = ("cpu", "gpu", "npu", "auto")

# onnxruntime execution providers per device, best first.
ONNX_PROVIDERS: dict[str, tuple[str, ...]] = {
    "npu": ("QNNExecutionProvider", "NnapiExecutionProvider", "CoreMLExecutionProvider", "OpenVINOExecutionProvider",
            "VitisAIExecutionProvider"),
    "gpu": ("CUDAExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider", "WebGpuExecutionProvider"),
    "cpu": ("CPUExecutionProvider",),
}
# ExecuTorch delegates are chosen at export; a .pte lowered to XNNPACK runs on the CPU.
PTE_DELEGATES: dict[str, tuple[str, ...]] = {"npu": ("QnnBackend", "CoreMLBackend"), "gpu": ("VulkanBackend",), "cpu": ("XnnpackBackend",)}
AUTO_ORDER = ("npu", "gpu", "cpu")


@dataclass(frozen=True)
class Placement:
    device: str  # the device the part really uses
    provider: str
    note: str = ""  # set when the request could not be met


def check_device(device: str) -> None:
    if device not in DEVICES:
        raise DeviceError(f"--device {device!r}: unknown device; choose one of {list(DEVICES)}")


def _fallback(part: str, device: str, wanted: tuple[str, ...], strict: bool, cpu_provider: str, why: str) -> Placement:
    if strict:
        raise DeviceError(
            f"{part}: --device {device} asked for, but {why} (looked for {', '.join(wanted)}); "
            "drop --strict to fall back to the CPU, or install a build that has one"
        )
    return Placement("cpu", cpu_provider, f"{part}: no {device} provider present ({why}); running on the CPU")


def place_onnx(part: str, device: str, strict: bool, available: list[str]) -> Placement:
    check_device(device)
    for dev in AUTO_ORDER if device == "auto" else (device,):
        for provider in ONNX_PROVIDERS[dev]:
            if provider in available:
                return Placement(dev, provider)
    if device == "auto":
        return Placement("cpu", "CPUExecutionProvider")
    return _fallback(part, device, ONNX_PROVIDERS[device], strict, "CPUExecutionProvider",
                     f"this onnxruntime build has {', '.join(available)}")


def place_pte(part: str, device: str, strict: bool, delegate: str = "XnnpackBackend") -> Placement:
    check_device(device)
    for dev in AUTO_ORDER if device == "auto" else (device,):
        if delegate in PTE_DELEGATES[dev]:
            return Placement(dev, f"ExecuTorch {delegate}")
    if device == "auto":
        return Placement("cpu", f"ExecuTorch {delegate}")
    return _fallback(part, device, PTE_DELEGATES[device], strict, f"ExecuTorch {delegate}",
                     f"the .pte was lowered to {delegate} at export")


def place_llm(device: str, strict: bool, gpu_offload: bool) -> tuple[Placement, int]:
    """(placement, n_gpu_layers) for llama.cpp: all layers on the GPU when the build can offload."""
    check_device(device)
    if device in ("gpu", "auto") and gpu_offload:
        return Placement("gpu", "llama.cpp GPU offload"), 999
    if device in ("cpu", "auto"):
        return Placement("cpu", "llama.cpp CPU"), 0
    why = "llama.cpp has no NPU backend" if device == "npu" else "this llama.cpp build cannot offload to a GPU"
    return _fallback("llm", device, ("llama.cpp GPU offload",), strict, "llama.cpp CPU", why), 0
