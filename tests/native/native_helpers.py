"""Where the native runtime's build lives (setup.sh builds it) and small helpers the native tests
share: loading the ctypes binding, an image as RGB8 bytes."""
from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "native" / "build"
ASAN_BUILD = REPO / "native" / "build-asan"
LIB = BUILD / "libmmedge.so"
CLI = BUILD / "mmedge-run"
ASAN_CLI = ASAN_BUILD / "mmedge-run"
BINDING = REPO / "native" / "python" / "mmedge_native.py"


def require_build(path: Path) -> Path:
    """The native tests fail (not skip) without the build: setup.sh makes it, and a missing build
    must not pass CI silently."""
    if not path.exists():
        pytest.fail(f"{path} is missing: run ./setup.sh (it builds native/ with CMake)")
    return path


@functools.lru_cache(maxsize=None)
def binding():
    spec = importlib.util.spec_from_file_location("mmedge_native", BINDING)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def rgb(image) -> tuple[bytes, int, int]:
    """A PIL image as the C ABI takes it: packed RGB8 rows."""
    image = image.convert("RGB")
    return image.tobytes(), image.width, image.height
