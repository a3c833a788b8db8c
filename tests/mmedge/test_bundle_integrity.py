"""open_bundle / Pipeline on damaged bundles: each damage is one named error that says what to do,
and no model parser (onnxruntime, llama.cpp) ever sees a file that failed its check.

The CLI on damaged bundles is in test_cli_damaged_bundle.py."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from mmedge.bundle import open_bundle, sha256_file
from mmedge.errors import (
    BackendError,
    IntegrityError,
    ManifestError,
    ManifestVersionError,
    UnsafePathError,
)
from mmedge.manifest import MAX_MANIFEST_BYTES

from .bundle_helpers import flip_byte, part_file, point_part_at, read_manifest_dict, write_manifest_dict

ROLES = ("vision_encoder", "projector", "llm")


# -- helpers ----------------------------------------------------------------------------------
def raises_exactly(exc_type, fn, *args, **kwargs):
    """Like pytest.raises, but a subclass (e.g. ManifestVersionError for ManifestError) does not count."""
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    assert type(info.value) is exc_type, f"expected exactly {exc_type.__name__}, got {type(info.value).__name__}: {info.value}"
    return str(info.value)


class ParserReached(Exception):
    """Raised by the stand-ins for onnxruntime / llama.cpp: a model parser was about to read a file."""


@pytest.fixture
def parsers(monkeypatch):
    """Replace the pipeline's model loaders with recorders, so no damaged file reaches a real parser
    in this process, and the test can see whether one would have."""
    import mmedge.runtime.pipeline as pipeline_mod

    seen: list[Path] = []

    def fake_tensor_part(path, part, *args, **kwargs):
        seen.append(Path(path))
        raise ParserReached(f"onnxruntime would load {path}")

    class FakeLlama:
        def __init__(self, path, options):
            seen.append(Path(path))
            raise ParserReached(f"llama.cpp would load {path}")

    monkeypatch.setattr(pipeline_mod, "open_tensor_part", fake_tensor_part)
    monkeypatch.setattr(pipeline_mod, "LlamaModel", FakeLlama)
    return seen


def make_pipeline(bundle: Path, check_hashes: bool = True):
    from mmedge.runtime.pipeline import Pipeline, RuntimeOptions

    return Pipeline(bundle, RuntimeOptions(check_hashes=check_hashes))


# -- the intact copy: the baseline every damage below departs from ------------------------------
def test_intact_copy_opens_and_matches_its_manifest(bundle_copy):
    bundle = open_bundle(bundle_copy)
    assert set(bundle.manifest.parts) == set(ROLES)
    for role in ROLES:
        part = bundle.manifest.parts[role]
        path = bundle.path_of(role)
        assert path.is_file() and not path.is_symlink()
        assert path.stat().st_size == part.size_bytes
        assert sha256_file(path) == part.sha256
    assert bundle.manifest.parts["llm"].kind == "gguf"
    assert bundle.manifest.parts["vision_encoder"].kind == "onnx"


# -- manifest.json damage ---------------------------------------------------------------------
def test_manifest_missing(bundle_copy):
    (bundle_copy / "manifest.json").unlink()
    msg = raises_exactly(ManifestError, open_bundle, bundle_copy)
    assert "manifest.json" in msg and "missing" in msg
    assert "not an mmedge bundle" in msg and "interrupted" in msg


@pytest.mark.parametrize(
    "content",
    [b'{"format": "mmedge-bundle", "format_version": 1,', b"not json at all", b"\xff\xfe\x00garbage\x80", b""],
    ids=["cut-off", "text", "binary", "empty"],
)
def test_manifest_not_json(bundle_copy, content):
    (bundle_copy / "manifest.json").write_bytes(content)
    msg = raises_exactly(ManifestError, open_bundle, bundle_copy)
    assert "not valid JSON" in msg
    assert "re-export" in msg


@pytest.mark.parametrize("value,found", [([], "list"), ([{"format": "mmedge-bundle"}], "list"), ("a string", "str"), (1, "int"), (None, "NoneType")])
def test_manifest_not_an_object(bundle_copy, value, found):
    write_manifest_dict(bundle_copy, value)
    msg = raises_exactly(ManifestError, open_bundle, bundle_copy)
    assert "expected a JSON object at the top level" in msg
    assert f"found {found}" in msg


def test_manifest_nested_too_deeply_is_a_manifest_error(bundle_copy):
    # json.loads recurses: a few kB of '[' would escape as a RecursionError (a traceback in the CLI).
    (bundle_copy / "manifest.json").write_text("[" * 100_000)
    msg = raises_exactly(ManifestError, open_bundle, bundle_copy)
    assert "nested too deeply" in msg and "re-export" in msg


def test_manifest_larger_than_any_manifest(bundle_copy):
    path = bundle_copy / "manifest.json"
    with open(path, "r+b") as f:
        f.truncate(MAX_MANIFEST_BYTES + 1)  # sparse: cheap to make, and never read
    msg = raises_exactly(ManifestError, open_bundle, bundle_copy)
    assert str(MAX_MANIFEST_BYTES + 1) in msg and "not a bundle" in msg


@pytest.mark.parametrize(
    "field_path,expected",
    [
        (("family",), "manifest.family: required field is missing"),
        (("format",), "manifest.format: required field is missing"),
        (("parts", "llm", "sha256"), "parts.llm.sha256: required field is missing"),
        (("parts", "vision_encoder", "file"), "parts.vision_encoder.file: required field is missing"),
        (("parts", "projector", "size_bytes"), "parts.projector.size_bytes: required field is missing"),
        (("image", "marker_token_id"), "image.marker_token_id: required field is missing"),
        (("preprocess", "image", "size"), "preprocess.image.size: required field is missing"),
        (("prompt",), "manifest.prompt: required field is missing"),
    ],
)
def test_required_field_removed(bundle_copy, field_path, expected):
    data = read_manifest_dict(bundle_copy)
    holder = data
    for key in field_path[:-1]:
        holder = holder[key]
    del holder[field_path[-1]]
    write_manifest_dict(bundle_copy, data)
    msg = raises_exactly(ManifestError, open_bundle, bundle_copy)
    assert expected in msg
    assert "re-export" in msg


def test_whole_part_removed(bundle_copy):
    data = read_manifest_dict(bundle_copy)
    del data["parts"]["projector"]
    write_manifest_dict(bundle_copy, data)
    msg = raises_exactly(ManifestError, open_bundle, bundle_copy)
    assert "manifest.parts: missing ['projector']" in msg
    assert "vision_encoder" in msg and "llm" in msg  # what a bundle needs


@pytest.mark.parametrize(
    "field_path,value,expected",
    [
        (("parts", "llm", "sha256"), "0" * 63, "expected 64 lowercase hex digits"),
        (("parts", "llm", "sha256"), "A" * 64, "expected 64 lowercase hex digits"),
        (("parts", "llm", "size_bytes"), -1, "expected >= 0, found -1"),
        (("parts", "llm", "size_bytes"), True, "found a boolean"),
        (("parts", "llm", "kind"), "pickle", "expected one of ('onnx', 'pte', 'mlpackage', 'gguf'), found 'pickle'"),
        (("format_version",), "1", "expected int, found str"),
        (("format",), "something-else", "this folder is not an mmedge bundle"),
    ],
)
def test_mistyped_field(bundle_copy, field_path, value, expected):
    data = read_manifest_dict(bundle_copy)
    holder = data
    for key in field_path[:-1]:
        holder = holder[key]
    holder[field_path[-1]] = value
    write_manifest_dict(bundle_copy, data)
    msg = raises_exactly(ManifestError, open_bundle, bundle_copy)
    assert expected in msg


@pytest.mark.parametrize("version", [99, 0, 2])
def test_format_version_changed(bundle_copy, version):
    data = read_manifest_dict(bundle_copy)
    data["format_version"] = version
    write_manifest_dict(bundle_copy, data)
    msg = raises_exactly(ManifestVersionError, open_bundle, bundle_copy)
    assert f"the bundle is version {version}" in msg and "reads version 1" in msg
    assert "re-export" in msg and "upgrade mmedge" in msg


# -- part file damage -------------------------------------------------------------------------
def _flip_offsets(size: int) -> dict[str, int]:
    return {"first": 0, "middle": size // 2, "last": size - 1}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_one_byte_flipped_is_an_integrity_error(bundle_copy, role, where):
    path = part_file(bundle_copy, role)
    expected_sha = read_manifest_dict(bundle_copy)["parts"][role]["sha256"]
    size = path.stat().st_size
    flip_byte(path, _flip_offsets(size)[where])
    assert path.stat().st_size == size  # same size: only the hash can tell
    actual_sha = sha256_file(path)
    assert actual_sha != expected_sha
    msg = raises_exactly(IntegrityError, open_bundle, bundle_copy)
    assert f"parts.{role}" in msg and path.name in msg
    assert actual_sha[:16] in msg and expected_sha[:16] in msg
    assert "sha256" in msg and "re-export" in msg
    # Skipping the hash check is the only way past it: then the bundle opens.
    assert open_bundle(bundle_copy, check_hashes=False).manifest.parts[role].sha256 == expected_sha


@pytest.mark.parametrize("role", ["vision_encoder", "llm"])
def test_pipeline_refuses_a_flipped_byte_before_any_parser(bundle_copy, parsers, role):
    path = part_file(bundle_copy, role)
    # The GGUF magic / the ONNX protobuf's first byte: a parser fed this would fail (BackendError).
    flip_byte(path, 0)
    with pytest.raises(IntegrityError) as info:
        make_pipeline(bundle_copy)
    assert not isinstance(info.value, BackendError)
    assert f"parts.{role}: sha256 of {path.name}" in str(info.value)
    assert parsers == [], f"a model parser saw files of a bundle that failed its check: {parsers}"
    # Control: with the check off, the damaged bundle does reach the parsers. So the assertion
    # above can fail, and it is the hash check (not something else) that stopped the load.
    with pytest.raises(ParserReached):
        make_pipeline(bundle_copy, check_hashes=False)
    assert parsers == [bundle_copy / read_manifest_dict(bundle_copy)["parts"]["vision_encoder"]["file"]]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("change", ["truncated", "emptied", "grown"])
def test_part_size_mismatch(bundle_copy, parsers, role, change):
    path = part_file(bundle_copy, role)
    size = path.stat().st_size
    data = path.read_bytes()
    new = {"truncated": data[: size // 2], "emptied": b"", "grown": data + b"\0"}[change]
    path.write_bytes(new)
    for check_hashes in (True, False):  # the size is checked even without hashes
        msg = raises_exactly(IntegrityError, open_bundle, bundle_copy, check_hashes=check_hashes)
        assert f"parts.{role}: {path.name} is {len(new)} bytes, the manifest says {size}" in msg
        assert "truncated or replaced" in msg and "re-export" in msg
        with pytest.raises(IntegrityError):
            make_pipeline(bundle_copy, check_hashes=check_hashes)
    assert parsers == []


@pytest.mark.parametrize("role", ROLES)
def test_part_file_deleted(bundle_copy, parsers, role):
    path = part_file(bundle_copy, role)
    path.unlink()
    msg = raises_exactly(IntegrityError, open_bundle, bundle_copy)
    assert f"parts.{role}: file {path.name!r} is missing from the bundle" in msg
    assert "re-export" in msg
    with pytest.raises(IntegrityError):
        make_pipeline(bundle_copy, check_hashes=False)
    assert parsers == []


def test_part_file_replaced_by_a_folder(bundle_copy):
    path = part_file(bundle_copy, "projector")
    path.unlink()
    path.mkdir()
    msg = raises_exactly(IntegrityError, open_bundle, bundle_copy)
    assert "missing from the bundle" in msg


# -- paths that leave the bundle ---------------------------------------------------------------
def test_part_path_with_dotdot(bundle_copy, parsers):
    # The file really is there, outside, with the right size and sha256: only the path rule stops it.
    real = part_file(bundle_copy, "vision_encoder")
    outside = bundle_copy.parent / "outside.onnx"
    shutil.copyfile(real, outside)
    point_part_at(bundle_copy, "vision_encoder", "../outside.onnx")
    msg = raises_exactly(UnsafePathError, open_bundle, bundle_copy)
    assert "parts.vision_encoder.file" in msg and "'../outside.onnx'" in msg
    assert "must be relative and stay inside the bundle" in msg
    msg2 = raises_exactly(UnsafePathError, open_bundle, bundle_copy, check_hashes=False)
    assert msg2 == msg
    with pytest.raises(UnsafePathError):
        make_pipeline(bundle_copy, check_hashes=False)
    assert parsers == []


@pytest.mark.parametrize("path", ["/etc/passwd", "sub/../../outside.onnx", "./../outside.onnx", "//etc/passwd"])
def test_part_path_absolute_or_escaping(bundle_copy, path):
    point_part_at(bundle_copy, "llm", path)
    msg = raises_exactly(UnsafePathError, open_bundle, bundle_copy)
    assert f"parts.llm.file: path {path!r} must be relative and stay inside the bundle" in msg


@pytest.mark.parametrize("path", ["", ".", "./", "a\x00b.onnx"])
def test_part_path_that_names_no_file(bundle_copy, path):
    # "." once escaped as an IndexError from contained_path.
    point_part_at(bundle_copy, "projector", path)
    msg = raises_exactly(UnsafePathError, open_bundle, bundle_copy)
    assert "parts.projector.file" in msg


def test_symlinked_part_pointing_outside(bundle_copy, parsers):
    # Same bytes, same size, same sha256 -- but they live outside the bundle.
    real = part_file(bundle_copy, "llm")
    outside_dir = bundle_copy.parent / "elsewhere"
    outside_dir.mkdir()
    moved = outside_dir / real.name
    shutil.move(real, moved)
    real.symlink_to(moved)
    assert sha256_file(real) == read_manifest_dict(bundle_copy)["parts"]["llm"]["sha256"]
    msg = raises_exactly(UnsafePathError, open_bundle, bundle_copy)
    assert "parts.llm.file" in msg and "outside the bundle" in msg
    with pytest.raises(UnsafePathError):
        make_pipeline(bundle_copy, check_hashes=False)
    assert parsers == []


def test_symlinked_part_pointing_inside(bundle_copy):
    real = part_file(bundle_copy, "projector")
    target = bundle_copy / "projector.real.onnx"
    real.rename(target)
    real.symlink_to(target.name)
    msg = raises_exactly(UnsafePathError, open_bundle, bundle_copy)
    assert "is a symlink; bundles hold regular files only" in msg


def test_part_under_a_symlinked_folder_pointing_outside(bundle_copy):
    real = part_file(bundle_copy, "vision_encoder")
    outside_dir = bundle_copy.parent / "outside_dir"
    outside_dir.mkdir()
    shutil.copyfile(real, outside_dir / real.name)
    (bundle_copy / "sub").symlink_to(outside_dir)
    point_part_at(bundle_copy, "vision_encoder", f"sub/{real.name}")
    msg = raises_exactly(UnsafePathError, open_bundle, bundle_copy)
    assert "outside the bundle" in msg


def test_manifest_is_a_symlink(bundle_copy):
    manifest = bundle_copy / "manifest.json"
    outside = bundle_copy.parent / "manifest.outside.json"
    shutil.move(manifest, outside)
    manifest.symlink_to(outside)
    msg = raises_exactly(UnsafePathError, open_bundle, bundle_copy)
    assert "manifest.json" in msg and "is a symlink" in msg


def test_manifest_is_a_dangling_symlink(bundle_copy):
    manifest = bundle_copy / "manifest.json"
    manifest.unlink()
    manifest.symlink_to(bundle_copy.parent / "does-not-exist.json")
    # A symlink is refused as a symlink, not reported as a missing file.
    msg = raises_exactly(UnsafePathError, open_bundle, bundle_copy)
    assert "is a symlink" in msg


# -- not a bundle at all -------------------------------------------------------------------------
def test_folder_that_is_not_a_bundle(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"\xff\xd8\xff")
    msg = raises_exactly(ManifestError, open_bundle, folder)
    assert "not an mmedge bundle" in msg
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "not an mmedge bundle" in raises_exactly(ManifestError, open_bundle, empty)


@pytest.mark.parametrize("kind", ["file", "absent"])
def test_path_that_is_not_a_folder(tmp_path, kind):
    path = tmp_path / "thing"
    if kind == "file":
        path.write_text("{}")
    msg = raises_exactly(ManifestError, open_bundle, path)
    assert "not a folder" in msg and "mmedge export" in msg


def test_foreign_json_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"name": "some npm package", "version": "1.0.0"}))
    msg = raises_exactly(ManifestError, open_bundle, tmp_path)
    assert "manifest.format: required field is missing" in msg


def test_open_bundle_does_not_modify_the_bundle(bundle_copy):
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in bundle_copy.iterdir()}
    open_bundle(bundle_copy)
    flip_byte(part_file(bundle_copy, "projector"), 5)
    with pytest.raises(IntegrityError):
        open_bundle(bundle_copy)
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in bundle_copy.iterdir()}
    assert set(after) == set(before)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {part_file(bundle_copy, "projector").name}
