"""Manifest parsing: a valid manifest round-trips; a missing or mistyped field is a ManifestError naming it.

Out-of-range values are in test_manifest_values.py."""
from __future__ import annotations

import copy
import json

import pytest

from mmedge.errors import ManifestError
from mmedge.manifest import FORMAT_NAME, FORMAT_VERSION, ImagePreprocessSpec, Manifest, PartSpec, TensorSpec

from .manifest_helpers import delete_path, manifest_error, set_path


# --- valid manifests --------------------------------------------------------------------------------
def test_valid_manifest_parses_to_the_right_values(valid):
    m = Manifest.from_dict(valid)
    assert m.format == FORMAT_NAME == "mmedge-bundle" and m.format_version == FORMAT_VERSION == 1
    assert m.family == "llava" and m.architecture == "LlavaForConditionalGeneration"
    assert list(m.parts) == ["vision_encoder", "projector", "llm"]
    enc = m.parts["vision_encoder"]
    assert isinstance(enc, PartSpec) and enc.role == "vision_encoder" and enc.kind == "onnx"
    assert enc.inputs == [TensorSpec(name="pixel_values", shape=["batch", 3, 336, 336], dtype="float32")]
    assert m.parts["llm"].size_bytes == 4_000_000_000 and m.parts["llm"].details["tensor_types"]["Q4_K"] == 200
    assert m.parts["projector"].size_bytes == 0
    pre = m.image_preprocess
    assert isinstance(pre, ImagePreprocessSpec)
    assert pre.output_hw() == (336, 336) and pre.resample == "bicubic" and pre.rescale_factor == 1 / 255
    assert pre.image_std == [0.26862954, 0.26130258, 0.27577711]
    assert m.image.marker == "<image>" and m.image.marker_token_id == 32000 and m.image.tokens_per_image == 576
    assert m.prompt.add_bos is True and m.prompt.prepend_space is False
    assert m.generation == {"eos_token_ids": [2], "max_new_tokens": 512}


def test_dict_round_trip(valid):
    m = Manifest.from_dict(valid)
    assert m.to_dict() == valid
    assert Manifest.from_dict(m.to_dict()) == m


def test_json_round_trip(valid):
    m = Manifest.from_dict(valid)
    text = m.to_json()
    assert text.endswith("\n") and json.loads(text) == valid
    again = Manifest.from_json(text)
    assert again == m
    assert Manifest.from_json(text.encode("utf-8")) == m  # bytes, as read from disk


def test_optional_fields_take_their_defaults(valid):
    for key in ("created_by", "source", "generation", "verification"):
        del valid[key]
    for role in ("vision_encoder", "projector", "llm"):
        for key in ("inputs", "outputs", "details"):
            del valid["parts"][role][key]
    image = valid["preprocess"]["image"]
    for key in ("crop_size", "rescale_factor", "image_mean", "image_std", "convert_rgb", "layout", "dtype"):
        del image[key]
    valid["prompt"] = {}
    m = Manifest.from_dict(valid)
    assert m.created_by == "" and m.source == {} and m.generation == {} and m.verification == {}
    assert m.parts["llm"].inputs == [] and m.parts["llm"].details == {}
    pre = m.image_preprocess
    assert pre.crop_size is None and pre.rescale_factor is None and pre.image_mean is None and pre.image_std is None
    assert pre.convert_rgb is True and pre.layout == "NCHW" and pre.dtype == "float32"
    assert m.prompt.chat_template is None and m.prompt.fallback_format == "{images}{text}" and m.prompt.add_bos is True
    # a shortest_edge resize without a crop has no fixed output size
    with pytest.raises(ManifestError, match="shortest_edge resize without crop_size gives no fixed size"):
        pre.output_hw()


def test_exact_resize_mode(valid):
    valid["preprocess"]["image"].update(resize_mode="exact", size={"height": 384, "width": 384}, crop_size=None)
    pre = Manifest.from_dict(valid).image_preprocess
    assert pre.resize_mode == "exact" and pre.output_hw() == (384, 384)


def test_ints_are_accepted_as_floats(valid):
    valid["preprocess"]["image"]["image_mean"] = [0, 0, 1]
    valid["preprocess"]["image"]["rescale_factor"] = 1
    pre = Manifest.from_dict(valid).image_preprocess
    assert pre.image_mean == [0.0, 0.0, 1.0] and all(type(v) is float for v in pre.image_mean)
    assert pre.rescale_factor == 1


def test_parsing_does_not_modify_the_input(valid):
    before = copy.deepcopy(valid)
    Manifest.from_dict(valid)
    assert valid == before


# --- missing fields ---------------------------------------------------------------------------------
REQUIRED = [
    ("format", "manifest.format"),
    ("format_version", "manifest.format_version"),
    ("family", "manifest.family"),
    ("architecture", "manifest.architecture"),
    ("parts", "manifest.parts"),
    ("preprocess", "manifest.preprocess"),
    ("image", "manifest.image"),
    ("prompt", "manifest.prompt"),
    ("preprocess.image", "preprocess.image"),
    ("preprocess.image.resize_mode", "preprocess.image.resize_mode"),
    ("preprocess.image.size", "preprocess.image.size"),
    ("preprocess.image.size.shortest_edge", "preprocess.image.size.shortest_edge"),
    ("preprocess.image.resample", "preprocess.image.resample"),
    ("preprocess.image.crop_size.height", "preprocess.image.crop_size.height"),
    ("preprocess.image.crop_size.width", "preprocess.image.crop_size.width"),
    ("image.marker", "image.marker"),
    ("image.marker_token_id", "image.marker_token_id"),
    ("image.tokens_per_image", "image.tokens_per_image"),
    ("image.embedding_dim", "image.embedding_dim"),
] + [
    (f"parts.{role}.{key}", f"parts.{role}.{key}")
    for role in ("vision_encoder", "projector", "llm")
    for key in ("file", "kind", "precision", "sha256", "size_bytes")
]


@pytest.mark.parametrize("path, named", REQUIRED, ids=[p for p, _ in REQUIRED])
def test_missing_required_field(valid, path, named):
    delete_path(valid, path)
    msg = manifest_error(valid)
    assert msg.startswith(f"{named}: required field is missing"), msg
    assert "mmedge export" in msg


@pytest.mark.parametrize("key", ["name", "shape", "dtype"])
def test_missing_tensor_field(valid, key):
    del valid["parts"]["vision_encoder"]["outputs"][0][key]
    assert manifest_error(valid).startswith(f"parts.vision_encoder.outputs[0].{key}: required field is missing")


@pytest.mark.parametrize("role", ["vision_encoder", "projector", "llm"])
def test_missing_part_role(valid, role):
    del valid["parts"][role]
    msg = manifest_error(valid)
    assert msg.startswith(f"manifest.parts: missing ['{role}']"), msg
    assert "a bundle needs ['vision_encoder', 'projector', 'llm']" in msg


def test_exact_mode_needs_height_and_width(valid):
    valid["preprocess"]["image"].update(resize_mode="exact", size={"height": 384})
    assert manifest_error(valid).startswith("preprocess.image.size.width: required field is missing")


# --- mistyped fields --------------------------------------------------------------------------------
MISTYPED = [
    ("format_version", "1", "manifest.format_version: expected int, found str"),
    ("format_version", True, "manifest.format_version: expected int, found a boolean"),
    ("format_version", 1.0, "manifest.format_version: expected int, found float"),
    ("family", 3, "manifest.family: expected str, found int"),
    ("parts", [], "manifest.parts: expected dict, found list"),
    ("preprocess", [], "manifest.preprocess: expected dict, found list"),
    ("preprocess.image", "bicubic", "preprocess.image: expected dict, found str"),
    ("image", ["<image>"], "manifest.image: expected dict, found list"),
    ("prompt", None, "manifest.prompt: expected dict, found NoneType"),
    ("generation", [], "manifest.generation: expected dict, found list"),
    ("source", "hub", "manifest.source: expected dict, found str"),
    ("created_by", None, "manifest.created_by: expected str, found NoneType"),
    ("parts.llm", ["llm.gguf"], "parts.llm: expected a JSON object, found list"),
    ("parts.llm.size_bytes", "4000", "parts.llm.size_bytes: expected int, found str"),
    ("parts.llm.size_bytes", True, "parts.llm.size_bytes: expected int, found a boolean"),
    ("parts.llm.size_bytes", 12.5, "parts.llm.size_bytes: expected int, found float"),
    ("parts.llm.file", ["llm.gguf"], "parts.llm.file: expected str, found list"),
    ("parts.llm.details", [], "parts.llm.details: expected dict, found list"),
    ("parts.projector.inputs", {}, "parts.projector.inputs: expected list, found dict"),
    ("parts.projector.sha256", 123, "parts.projector.sha256: expected str, found int"),
    ("preprocess.image.size", [336], "preprocess.image.size: expected dict, found list"),
    ("preprocess.image.size.shortest_edge", "336", "preprocess.image.size.shortest_edge: expected int, found str"),
    ("preprocess.image.size.shortest_edge", True, "preprocess.image.size.shortest_edge: expected int, found a boolean"),
    ("preprocess.image.crop_size", [336, 336], "preprocess.image.crop_size: expected dict or NoneType, found list"),
    ("preprocess.image.crop_size.height", 336.0, "preprocess.image.crop_size.height: expected int, found float"),
    ("preprocess.image.rescale_factor", "1/255", "preprocess.image.rescale_factor: expected int or float or NoneType, found str"),
    ("preprocess.image.rescale_factor", True, "preprocess.image.rescale_factor: expected int or float or NoneType, found a boolean"),
    ("preprocess.image.image_mean", {"r": 0.5}, "preprocess.image.image_mean: expected list or NoneType, found dict"),
    ("preprocess.image.image_mean", [0.5, "0.5", 0.5], "preprocess.image.image_mean: expected 3 numbers"),
    ("preprocess.image.image_std", [0.5, True, 0.5], "preprocess.image.image_std: expected 3 numbers"),
    ("preprocess.image.image_std", [0.5, 0.5], "preprocess.image.image_std: expected 3 numbers, found [0.5, 0.5]"),
    ("preprocess.image.convert_rgb", 1, "preprocess.image.convert_rgb: expected bool, found int"),
    ("preprocess.image.convert_rgb", "yes", "preprocess.image.convert_rgb: expected bool, found str"),
    ("image.marker_token_id", "32000", "image.marker_token_id: expected int, found str"),
    ("image.tokens_per_image", False, "image.tokens_per_image: expected int, found a boolean"),
    ("prompt.add_bos", 1, "prompt.add_bos: expected bool, found int"),
    ("prompt.chat_template", ["{{ x }}"], "prompt.chat_template: expected str or NoneType, found list"),
]


@pytest.mark.parametrize("path, value, message", MISTYPED, ids=[f"{p}={v!r}" for p, v, _ in MISTYPED])
def test_mistyped_field(valid, path, value, message):
    set_path(valid, path, value)
    msg = manifest_error(valid)
    assert msg.startswith(message), msg


@pytest.mark.parametrize("value", [[], "manifest", 1, None])
def test_top_level_must_be_an_object(value):
    msg = manifest_error(value)
    assert msg.startswith(f"manifest: expected a JSON object at the top level, found {type(value).__name__}")


