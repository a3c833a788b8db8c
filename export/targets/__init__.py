"""Tensor-part targets; each module registers itself on import."""
from .base import TensorTarget, register_target, registered_targets, tensor_target
from . import coreml, executorch, onnx  # noqa: F401,E402  (registration)

__all__ = ["TensorTarget", "register_target", "registered_targets", "tensor_target"]
