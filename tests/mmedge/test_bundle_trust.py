"""The bundle's trust boundary beyond hashes: no hard links, no links anywhere in the folder, and
no model file the manifest does not list (a parser could be pointed at an unhashed file: ONNX
external data, a second GGUF). Harmless unlisted files (notes) are allowed."""
from __future__ import annotations

import os
import shutil

import pytest

from mmedge.bundle import open_bundle
from mmedge.errors import IntegrityError, UnsafePathError

from .bundle_helpers import part_file
from .test_bundle_integrity import make_pipeline, parsers, raises_exactly  # noqa: F401 (fixture)

ROLES = ("vision_encoder", "projector", "llm")


@pytest.mark.parametrize("role", ROLES)
def test_a_hard_linked_part_is_refused(bundle_copy, tmp_path, role):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.link(part_file(bundle_copy, role), outside / "same-inode")
    msg = raises_exactly(UnsafePathError, open_bundle, bundle_copy)
    assert "2 hard links" in msg and f"parts.{role}" in msg and "cp -r" in msg


@pytest.mark.parametrize("name", ["extra.onnx", "weights.bin", "vision_encoder.fp32.onnx.data", "x.onnx_data",
                                  "llm2.gguf", "model.safetensors", "evil.pkl", "sub/deep/model.pt", "UPPER.GGUF",
                                  "program.pte"])
def test_an_unlisted_model_file_is_refused(bundle_copy, parsers, name):  # noqa: F811
    path = bundle_copy / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * 64)
    msg = raises_exactly(IntegrityError, open_bundle, bundle_copy)
    assert name in msg and "not in its manifest" in msg
    with pytest.raises(IntegrityError):
        make_pipeline(bundle_copy)
    assert parsers == []


@pytest.mark.parametrize("name", ["README.md", "notes.txt", ".DS_Store", "sub/LICENSE"])
def test_harmless_unlisted_files_are_allowed(bundle_copy, name):
    path = bundle_copy / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("hello")
    assert open_bundle(bundle_copy).manifest.parts["llm"].file


@pytest.mark.parametrize("target", ["/etc/passwd", "/", "manifest.json", "missing-target"])
def test_any_symlink_in_the_bundle_is_refused(bundle_copy, target):
    (bundle_copy / "link").symlink_to(target)
    msg = raises_exactly(UnsafePathError, open_bundle, bundle_copy)
    assert "link is a symlink inside the bundle" in msg


def test_a_symlinked_folder_in_the_bundle_is_refused(bundle_copy, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copyfile(part_file(bundle_copy, "llm"), outside / "copy.gguf")
    (bundle_copy / "more").symlink_to(outside, target_is_directory=True)
    msg = raises_exactly(UnsafePathError, open_bundle, bundle_copy)
    assert "more is a symlink inside the bundle" in msg
