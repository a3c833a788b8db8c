"""Targets for the tensor parts (vision encoder, projector): a registry of compilers.

A target turns a torch module with named inputs (one, or several for targets that say
`multi_input`) and one output into one artifact file at a precision it supports. A precision the
target cannot do is refused before any work, with the list of what it can do.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from mmedge.errors import RecipeError


class TensorTarget(ABC):
    name: ClassVar[str]  # the CLI's --target value
    kind: ClassVar[str]  # the manifest's artifact kind
    suffix: ClassVar[str]  # file extension
    precisions: ClassVar[tuple[str, ...]]
    multi_input: ClassVar[bool] = False  # can compile a module that takes several inputs

    @abstractmethod
    def export(self, module, inputs: dict, output_name: str, precision: str, out: Path, workdir: Path,
               calibration: list | None = None) -> dict:
        """Write `out`; return details for the manifest (quantization settings, ...).

        `inputs`: example tensors by input name, in the module's argument order, dim 0 dynamic.
        `calibration`: float32 input batches (numpy) for precisions that calibrate activations."""

    def one_input(self, inputs: dict) -> tuple[str, object]:
        """(name, example) of a single-input module; several inputs are refused for this target."""
        if len(inputs) != 1:
            raise RecipeError(f"the {self.name} target compiles parts with one input; this part takes {list(inputs)}. "
                              "Export it with --target onnx")
        return next(iter(inputs.items()))

    def check(self, precision: str, part: str) -> None:
        if precision not in self.precisions:
            raise RecipeError(
                f"--{part} {precision!r}: the {self.name} target cannot do this precision; it can do {list(self.precisions)}"
            )


_TARGETS: dict[str, type[TensorTarget]] = {}


def register_target(cls: type[TensorTarget]) -> type[TensorTarget]:
    _TARGETS[cls.name] = cls
    return cls


def tensor_target(name: str) -> TensorTarget:
    if name not in _TARGETS:
        raise RecipeError(f"--target {name!r}: unknown target; choose one of {sorted(_TARGETS)}")
    return _TARGETS[name]()


def registered_targets() -> list[str]:
    return sorted(_TARGETS)
