"""Manifest values: well-typed but wrong values (hashes, kinds, versions, shapes, ranges) are ManifestErrors."""
from __future__ import annotations

import copy
import json

import pytest

from mmedge.errors import BundleError, ManifestError, ManifestVersionError
from mmedge.manifest import Manifest

from .manifest_helpers import delete_path, manifest_error, set_path


@pytest.mark.parametrize(
    "sha, why",
    [
        ("0" * 63, "too short"),
        ("0" * 65, "too long"),
        ("", "empty"),
        ("0123456789ABCDEF" * 4, "uppercase"),
        ("g" * 64, "non-hex"),
        ("0123456789abcdef" * 3 + "0123456789abcde ", "space"),
    ],
)
def test_bad_sha256(valid, sha, why):
    valid["parts"]["projector"]["sha256"] = sha
    msg = manifest_error(valid)
    assert msg.startswith(f"parts.projector.sha256: expected 64 lowercase hex digits, found {sha!r}"), (why, msg)


def test_bad_sha256_message_is_bounded(valid):
    valid["parts"]["llm"]["sha256"] = "x" * 10_000
    msg = manifest_error(valid)
    assert msg.startswith("parts.llm.sha256: expected 64 lowercase hex digits") and len(msg) < 200


def test_unknown_part_role(valid):
    valid["parts"]["audio_encoder"] = copy.deepcopy(valid["parts"]["projector"])
    msg = manifest_error(valid)
    assert msg.startswith("manifest.parts: unknown part roles ['audio_encoder']"), msg
    assert "known roles are ['vision_encoder', 'projector', 'llm']" in msg


@pytest.mark.parametrize("kind", ["tflite", "ONNX", "", "safetensors"])
def test_unknown_artifact_kind(valid, kind):
    valid["parts"]["vision_encoder"]["kind"] = kind
    from mmedge.manifest import ARTIFACT_KINDS

    assert manifest_error(valid).startswith(f"parts.vision_encoder.kind: expected one of {ARTIFACT_KINDS}, found {kind!r}")


@pytest.mark.parametrize("role, kind", [("llm", "onnx"), ("llm", "pte"), ("vision_encoder", "gguf"), ("projector", "gguf")])
def test_kind_must_suit_the_role(valid, role, kind):
    valid["parts"][role]["kind"] = kind
    assert manifest_error(valid).startswith(f"parts.{role}.kind: {kind!r} cannot hold the {role} part")


@pytest.mark.parametrize("fmt", ["mmedge", "gguf-bundle", "MMEDGE-BUNDLE", ""])
def test_wrong_format_name(valid, fmt):
    valid["format"] = fmt
    msg = manifest_error(valid)
    assert msg.startswith(f"manifest.format: expected 'mmedge-bundle', found {fmt!r}"), msg
    assert "not an mmedge bundle" in msg


@pytest.mark.parametrize("version", [2, 0, 99])
def test_other_format_version(valid, version):
    valid["format_version"] = version
    with pytest.raises(ManifestVersionError) as e:
        Manifest.from_dict(valid)
    msg = str(e.value)
    assert msg.startswith(f"manifest.format_version: this mmedge reads version 1, the bundle is version {version}")
    assert "upgrade mmedge" in msg


def test_version_error_is_a_manifestmanifest_error(valid):
    valid["format_version"] = 2
    with pytest.raises(ManifestError):
        Manifest.from_dict(valid)
    with pytest.raises(BundleError):
        Manifest.from_dict(valid)


@pytest.mark.parametrize(
    "text",
    ["", "{", '{"format": "mmedge-bundle",}', "{'format': 'mmedge-bundle'}", "not json", b"\xff\xfe\x00garbage"],
)
def test_invalid_json(text):
    with pytest.raises(ManifestError) as e:
        Manifest.from_json(text)
    msg = str(e.value)
    assert msg.startswith("manifest.json is not valid JSON (") and "re-export it" in msg
    assert not isinstance(e.value, ManifestVersionError)


def test_json_that_is_not_an_object():
    with pytest.raises(ManifestError, match="expected a JSON object at the top level, found list"):
        Manifest.from_json("[1, 2, 3]")


def test_truncated_manifest_json(valid):
    text = json.dumps(valid)
    with pytest.raises(ManifestError, match="not valid JSON"):
        Manifest.from_json(text[: len(text) // 2])


@pytest.mark.parametrize("std", [[0.5, 0, 0.5], [0.0, 0.5, 0.5], [0.5, 0.5, -0.0]])
def test_image_std_with_zero(valid, std):
    valid["preprocess"]["image"]["image_std"] = std
    assert manifest_error(valid).startswith("preprocess.image.image_std: a zero would divide by zero")


@pytest.mark.parametrize(
    "dim, index", [(-1, 1), (-576, 1), (True, 0), (3.0, 1), (None, 2), ([3], 0)]
)
def test_bad_shape_dims(valid, dim, index):
    valid["parts"]["projector"]["outputs"][0]["shape"][index] = dim
    msg = manifest_error(valid)
    assert msg.startswith(
        f"parts.projector.outputs[0].shape[{index}]: expected a non-negative int or a symbolic name, found {dim!r}"
    ), msg


def test_zero_dim_and_symbolic_dims_are_valid(valid):
    valid["parts"]["llm"]["inputs"] = [{"name": "tokens", "shape": [0, "seq"], "dtype": "int32"}]
    assert Manifest.from_dict(valid).parts["llm"].inputs[0].shape == [0, "seq"]


def test_shape_must_be_a_list(valid):
    valid["parts"]["vision_encoder"]["inputs"][0]["shape"] = "batch,3,336,336"
    assert manifest_error(valid).startswith("parts.vision_encoder.inputs[0].shape: expected list, found str")


def test_negative_size_bytes(valid):
    valid["parts"]["llm"]["size_bytes"] = -1
    assert manifest_error(valid).startswith("parts.llm.size_bytes: expected >= 0, found -1")


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("preprocess.image.resize_mode", "longest_edge", "preprocess.image.resize_mode: expected 'shortest_edge' or 'exact', found 'longest_edge'"),
        ("preprocess.image.size.shortest_edge", 0, "preprocess.image.size.shortest_edge: expected 1..8192, found 0"),
        ("preprocess.image.size.shortest_edge", 8193, "preprocess.image.size.shortest_edge: expected 1..8192, found 8193"),
        ("preprocess.image.crop_size.width", -336, "preprocess.image.crop_size.width: expected 1..8192, found -336"),
        ("image.marker", "", "image.marker: must not be empty"),
        ("image.tokens_per_image", 0, "image.tokens_per_image / embedding_dim: out of range"),
        ("image.embedding_dim", 2**20 + 1, "image.tokens_per_image / embedding_dim: out of range"),
    ],
)
def test_out_of_range_values(valid, path, value, message):
    set_path(valid, path, value)
    assert manifest_error(valid).startswith(message)


def test_errors_are_manifest_errors_not_key_errors(valid):
    """Every single-field deletion anywhere in the manifest is either accepted or a ManifestError."""
    paths = []

    def walk(d, prefix):
        for k, v in d.items():
            p = f"{prefix}{k}"
            paths.append(p)
            if isinstance(v, dict):
                walk(v, p + ".")

    walk(valid, "")
    outcomes = {"ok": 0, "error": 0}
    for p in paths:
        d = copy.deepcopy(valid)
        delete_path(d, p)
        try:
            Manifest.from_dict(d)
            outcomes["ok"] += 1
        except ManifestError:
            outcomes["error"] += 1
    assert len(paths) == 76
    # required: 8 top level + preprocess.image + 4 in it (resize_mode, size, shortest_edge, resample)
    # + 2 crop_size keys + 3 parts + 3 x 5 part fields + 4 image fields + image.layout.kind = 38
    # (image.layout, image.attention, image.embedding_divisor and prompt.first_position are
    # optional: absent means LLaVA's behaviour)
    assert outcomes == {"ok": 76 - 38, "error": 38}


@pytest.mark.parametrize("field, value, message", [
    ("resample", "cubic-ish", "preprocess.image.resample: expected one of"),
    ("rescale_factor", 0, "rescale_factor: expected a positive number"),
    ("rescale_factor", -0.5, "rescale_factor: expected a positive number"),
    ("image_mean", [0.5, float("nan"), 0.5], "image_mean: expected finite numbers"),
    ("layout", "NHWC", "NCHW float32 pixel values, the bundle asks NHWC float32"),
    ("dtype", "float16", "the bundle asks NCHW float16"),
])
def test_preprocess_values_the_runtime_cannot_honour(valid, field, value, message):
    valid["preprocess"]["image"][field] = value
    assert message in manifest_error(valid)


def test_negative_marker_token_id(valid):
    valid["image"]["marker_token_id"] = -1
    assert "image.marker_token_id: expected a token id >= 0" in manifest_error(valid)


IDEFICS3_LAYOUT = {"kind": "idefics3-tiles", "longest_edge": 2048, "tile_size": 512, "split": True,
                   "image_token": "<image>", "fake_image_token": "<fake_token_around_image>",
                   "global_image_token": "<global-img>"}


def test_tiling_layout_round_trips(valid):
    valid["image"]["layout"] = dict(IDEFICS3_LAYOUT)
    m = Manifest.from_dict(valid)
    assert (m.image.layout.kind, m.image.layout.tile_size, m.image.layout.max_side) == ("idefics3-tiles", 512, 4096)
    assert Manifest.from_json(m.to_json()).image == m.image


@pytest.mark.parametrize("change, message", [
    ({"kind": "mosaic"}, "image.layout.kind: 'mosaic' is not a layout this mmedge knows"),
    ({"tile_size": 0}, "image.layout.tile_size: expected 1..8192, found 0"),
    ({"tile_size": 5000, "max_side": 4096}, "image.layout.tile_size: 5000 exceeds max_side 4096"),
    ({"split": "yes"}, "image.layout.split: expected bool, found str"),
    ({"image_token": ""}, "image.layout.image_token: expected a token's text"),
    ({"longest_edge": True}, "image.layout.longest_edge: expected int, found a boolean"),
])
def test_bad_tiling_layout_values(valid, change, message):
    valid["image"]["layout"] = {**IDEFICS3_LAYOUT, **change}
    assert message in manifest_error(valid)


def test_layout_must_be_an_object(valid):
    valid["image"]["layout"] = "tiles"
    assert "image.layout: expected a JSON object, found str" in manifest_error(valid)
