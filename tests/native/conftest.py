from __future__ import annotations

import pytest

from .native_helpers import LIB, binding, require_build


@pytest.fixture(scope="session")
def native():
    """The C ABI through ctypes (native/python/mmedge_native.py)."""
    return binding().NativeRuntime(require_build(LIB))


@pytest.fixture(scope="session")
def et_bundle(bundles_with_targets):
    """The tiny LLaVA with ExecuTorch fp32 encoder and projector and an F32 GGUF: what native runs."""
    return bundles_with_targets("clip-llama-bpe", ("executorch", "fp32"), ("executorch", "fp32"), "F32")[0]
