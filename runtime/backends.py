"""One backend per artifact kind for the tensor parts (encoder, projector), in a registry.

A backend takes numpy arrays and returns a float32 numpy array; the pipeline does not know which
runtime runs a part. A part with one input takes an array; a part with several (Qwen2-VL's
encoder: patches and rotary ids) takes a dict name -> array (ONNX only).
"""
from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from mmedge.errors import BackendError
from mmedge.manifest import PartSpec

from .devices import Placement, place_onnx, place_pte
from .executorch_pool import claim_pool
from .onnx_check import check_onnx_self_contained
from .onnx_full_check import check_onnx_model
from .threads import resolve_threads


Inputs = np.ndarray | dict[str, np.ndarray]


def single_input(x: Inputs, role: str) -> np.ndarray:
    """The one array of a single-input part (a dict of one entry is accepted too)."""
    if isinstance(x, dict):
        if len(x) != 1:
            raise BackendError(f"parts.{role}: this backend runs parts with one input, got {sorted(x)}; "
                               "export this part with --target onnx")
        (x,) = x.values()
    return np.ascontiguousarray(x, dtype=np.float32)


def _shapes(x: Inputs) -> str:
    return str({k: tuple(v.shape) for k, v in x.items()} if isinstance(x, dict) else tuple(x.shape))


class TensorBackend(ABC):
    """Runs one compiled tensor part: one input (an array) or several (by name), one output."""

    placement: Placement
    threads: int = 0  # the threads the part really runs on; 0 where the runtime picks (Core ML)

    @property
    def provider(self) -> str:
        return self.placement.provider

    @abstractmethod
    def run(self, x: Inputs) -> np.ndarray:
        ...


_BACKENDS: dict[str, Callable[..., TensorBackend]] = {}


def register_backend(kind: str):
    def deco(cls):
        _BACKENDS[kind] = cls
        return cls

    return deco


def unavailable_reason(part: PartSpec) -> str | None:
    """Why this machine cannot run the part at all (not a device choice), or None."""
    factory = _BACKENDS.get(part.kind)
    if factory is None:
        return f"no runtime backend for kind {part.kind!r}"
    check = getattr(factory, "unavailable_reason", None)
    return check() if check else None


TARGETS_BY_KIND = {"onnx": "onnx", "pte": "executorch", "mlpackage": "coreml"}


def part_target(part: PartSpec) -> str:
    return part.details.get("target") or TARGETS_BY_KIND.get(part.kind, part.kind)


def select_part(candidates: list[PartSpec], target: str = "auto") -> PartSpec:
    """The part to run among a role's compiled variants: the asked target, else the first one
    this machine can run (the primary part first), else the primary (whose backend will say why)."""
    if target != "auto":
        for part in candidates:
            if part_target(part) == target:
                return part
        raise BackendError(
            f"--target {target}: the bundle's {candidates[0].role} was compiled for {[part_target(p) for p in candidates]}; "
            "choose one of those or re-export with that target"
        )
    for part in candidates:
        if unavailable_reason(part) is None:
            return part
    return candidates[0]


def open_tensor_part(path: Path, part: PartSpec, threads: int = 0, device: str = "cpu", strict: bool = False,
                     verified_sha256: str | None = None) -> TensorBackend:
    factory = _BACKENDS.get(part.kind)
    if factory is None:
        raise BackendError(
            f"parts.{part.role}: kind {part.kind!r} has no runtime backend here; available: {sorted(_BACKENDS)}"
        )
    return factory(path, part, threads, device, strict, verified_sha256)


@register_backend("onnx")
class OnnxBackend(TensorBackend):
    def __init__(self, path: Path, part: PartSpec, threads: int = 0, device: str = "cpu", strict: bool = False,
                 verified_sha256: str | None = None):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendError(f"onnxruntime is not installed ({e}); pip install 'mmedge[runtime]'") from None
        opts = ort.SessionOptions()
        self.threads = resolve_threads(threads)
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.placement = place_onnx(part.role, device, strict, ort.get_available_providers())
        providers = [self.placement.provider] + (["CPUExecutionProvider"] if self.placement.device != "cpu" else [])
        check_onnx_self_contained(path)  # no external data: nothing outside the hashed file gets read
        check_onnx_model(path, verified_sha256)  # onnx.checker's full check (a pass is remembered by hash)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise BackendError(f"parts.{part.role}: onnxruntime could not load {path.name}: {e}") from None
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        if not inputs or len(outputs) != 1:
            raise BackendError(f"parts.{part.role}: expected inputs and one output, found {len(inputs)} and {len(outputs)}")
        self.role = part.role
        # Each input is fed in the graph's own element type (float32 pixels, int64 ids).
        self.input_types = {i.name: _ORT_TYPES.get(i.type, np.float32) for i in inputs}
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name
        if part.inputs and [t.name for t in part.inputs] != list(self.input_types):
            raise BackendError(f"parts.{part.role}: manifest inputs {[t.name for t in part.inputs]} differ from the "
                               f"graph's {list(self.input_types)}; the bundle is damaged, re-export it")

    def run(self, x: Inputs) -> np.ndarray:
        named = x if isinstance(x, dict) else {self.input_name: x}
        if set(named) != set(self.input_types):
            raise BackendError(f"parts.{self.role}: the graph takes inputs {sorted(self.input_types)}, got {sorted(named)}")
        feeds = {k: np.ascontiguousarray(v, dtype=self.input_types[k]) for k, v in named.items()}
        try:
            return self.session.run([self.output_name], feeds)[0]
        except Exception as e:
            raise BackendError(f"onnxruntime failed on inputs of shape {_shapes(x)}: {e}") from None


# onnxruntime's input type names -> numpy dtypes, for the input kinds parts take.
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


@register_backend("pte")
class ExecuTorchBackend(TensorBackend):
    """An ExecuTorch program (XNNPACK-lowered) through `executorch.runtime`.

    Imported only when a bundle holds a .pte part: executorch's Python bindings import torch,
    so bundles with .pte parts are not torch-free in Python (the native runtime is).
    """

    def __init__(self, path: Path, part: PartSpec, threads: int = 0, device: str = "cpu", strict: bool = False,
                 verified_sha256: str | None = None):
        self.placement = place_pte(part.role, device, strict)
        try:
            import torch
            from executorch.runtime import Runtime, Verification
        except ImportError as e:
            raise BackendError(
                f"parts.{part.role} is an ExecuTorch .pte; running it in Python needs executorch (and torch): {e}. "
                "Install them (pip install executorch==1.5.1) or export this part with --target onnx"
            ) from None
        self._torch = torch
        # Sized before the method loads: XNNPACK keeps the pool it sees then (runtime/executorch_pool.py).
        asked = resolve_threads(threads)
        self.threads = claim_pool(self, asked)
        if self.threads != asked and not self.placement.note:
            self.placement = replace(self.placement, note=(
                f"{part.role}: {asked} threads asked for, but ExecuTorch's thread pool is shared by the process and "
                f"another open .pte part holds it at {self.threads}; close that pipeline first, or ask for {self.threads}"))
        try:
            program = Runtime.get().load_program(str(path), verification=Verification.InternalConsistency)
            self.method = program.load_method("forward")
        except Exception as e:  # the bindings raise RuntimeError/ValueError without a common type
            raise BackendError(f"parts.{part.role}: ExecuTorch could not load {path.name}: {e}") from None
        self.max_batch = int(part.details.get("max_batch", 64))
        self.role = part.role

    def run(self, x: Inputs) -> np.ndarray:
        x = single_input(x, self.role)
        if x.shape[0] > self.max_batch:
            # The program was exported for batches up to max_batch; run larger ones in slices.
            return np.concatenate([self.run(x[i : i + self.max_batch]) for i in range(0, x.shape[0], self.max_batch)])
        try:
            out = self.method.execute([self._torch.from_numpy(x)])
        except Exception as e:
            raise BackendError(f"ExecuTorch failed on input of shape {tuple(x.shape)}: {e}") from None
        return out[0].numpy()


@register_backend("mlpackage")
class CoreMLBackend(TensorBackend):
    """A Core ML mlprogram through coremltools. Core ML exists only on macOS/iOS."""

    @staticmethod
    def unavailable_reason() -> str | None:
        if sys.platform != "darwin":
            return "Core ML runs only on macOS/iOS"
        return None

    def __init__(self, path: Path, part: PartSpec, threads: int = 0, device: str = "cpu", strict: bool = False,
                 verified_sha256: str | None = None):
        why = self.unavailable_reason()
        if why:
            raise BackendError(
                f"parts.{part.role} is a Core ML .mlpackage and {why}; run this bundle on a Mac, "
                "or export the part with --target onnx or --target executorch for this machine"
            )
        import coremltools as ct

        units = {"cpu": ct.ComputeUnit.CPU_ONLY, "gpu": ct.ComputeUnit.CPU_AND_GPU, "npu": ct.ComputeUnit.CPU_AND_NE,
                 "auto": ct.ComputeUnit.ALL}[device]
        self.placement = Placement(device if device != "auto" else "auto", f"Core ML {units.name}")
        try:
            self.model = ct.models.MLModel(str(path), compute_units=units)
        except Exception as e:
            raise BackendError(f"parts.{part.role}: Core ML could not load {path.name}: {e}") from None
        self.input_name = part.inputs[0].name
        self.output_name = part.outputs[0].name
        self.role = part.role

    def run(self, x: Inputs) -> np.ndarray:
        x = single_input(x, self.role)
        try:
            return np.asarray(self.model.predict({self.input_name: x})[self.output_name], dtype=np.float32)
        except Exception as e:
            raise BackendError(f"Core ML failed on input of shape {tuple(x.shape)}: {e}") from None
