"""Manifest parsing: a valid manifest round-trips; every malformed one is a ManifestError naming the field."""
from __future__ import annotations

import copy
import json

import pytest

from mmedge.errors import BundleError, ManifestError, ManifestVersionError
from mmedge.manifest import FORMAT_NAME, FORMAT_VERSION, ImagePreprocessSpec, Manifest, PartSpec, TensorSpec

SHA_A = "0123456789abcdef" * 4
SHA_B = "f" * 64
SHA_C = "a1" * 32


@pytest.fixture
def valid() -> dict:
    """A complete manifest as `Manifest.to_dict` lays it out (a LLaVA-1.5-like CLIP + Llama bundle)."""
    return {
        "format": "mmedge-bundle",
        "format_version": 1,
        "created_by": "mmedge 0.1.0",
        "family": "llava",
        "architecture": "LlavaForConditionalGeneration",
        "source": {"checkpoint": "llava-1.5-7b-hf", "sha256": SHA_A},
        "parts": {
            "vision_encoder": {
                "file": "vision_encoder.onnx",
                "kind": "onnx",
                "precision": "fp32",
                "sha256": SHA_A,
                "size_bytes": 1234,
                "inputs": [{"name": "pixel_values", "shape": ["batch", 3, 336, 336], "dtype": "float32"}],
                "outputs": [{"name": "features", "shape": ["batch", 576, 1024], "dtype": "float32"}],
                "details": {"opset": 17},
            },
            "projector": {
                "file": "projector.onnx",
                "kind": "onnx",
                "precision": "fp16",
                "sha256": SHA_B,
                "size_bytes": 0,
                "inputs": [{"name": "features", "shape": ["batch", 576, 1024], "dtype": "float32"}],
                "outputs": [{"name": "embeddings", "shape": ["batch", 576, 4096], "dtype": "float32"}],
                "details": {},
            },
            "llm": {
                "file": "llm.gguf",
                "kind": "gguf",
                "precision": "Q4_K_M",
                "sha256": SHA_C,
                "size_bytes": 4_000_000_000,
                "inputs": [],
                "outputs": [],
                "details": {"tensor_types": {"Q4_K": 200, "F32": 65}},
            },
        },
        "preprocess": {
            "image": {
                "resize_mode": "shortest_edge",
                "size": {"shortest_edge": 336},
                "resample": "bicubic",
                "crop_size": {"height": 336, "width": 336},
                "rescale_factor": 1 / 255,
                "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711],
                "convert_rgb": True,
                "layout": "NCHW",
                "dtype": "float32",
            }
        },
        "image": {"marker": "<image>", "marker_token_id": 32000, "tokens_per_image": 576, "embedding_dim": 4096},
        "prompt": {
            "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}",
            "fallback_format": "{images}{text}",
            "add_bos": True,
            "prepend_space": False,
        },
        "generation": {"eos_token_ids": [2], "max_new_tokens": 512},
        "verification": {"greedy_tokens_equal": 32, "greedy_tokens_total": 32},
    }


def _set(d: dict, path: str, value) -> dict:
    keys = path.split(".")
    for k in keys[:-1]:
        d = d[k]
    d[keys[-1]] = value


def _delete(d: dict, path: str) -> None:
    keys = path.split(".")
    for k in keys[:-1]:
        d = d[k]
    del d[keys[-1]]


def _error(d) -> str:
    with pytest.raises(ManifestError) as e:
        Manifest.from_dict(d)
    return str(e.value)


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
    _delete(valid, path)
    msg = _error(valid)
    assert msg.startswith(f"{named}: required field is missing"), msg
    assert "mmedge export" in msg


@pytest.mark.parametrize("key", ["name", "shape", "dtype"])
def test_missing_tensor_field(valid, key):
    del valid["parts"]["vision_encoder"]["outputs"][0][key]
    assert _error(valid).startswith(f"parts.vision_encoder.outputs[0].{key}: required field is missing")


@pytest.mark.parametrize("role", ["vision_encoder", "projector", "llm"])
def test_missing_part_role(valid, role):
    del valid["parts"][role]
    msg = _error(valid)
    assert msg.startswith(f"manifest.parts: missing ['{role}']"), msg
    assert "a bundle needs ['vision_encoder', 'projector', 'llm']" in msg


def test_exact_mode_needs_height_and_width(valid):
    valid["preprocess"]["image"].update(resize_mode="exact", size={"height": 384})
    assert _error(valid).startswith("preprocess.image.size.width: required field is missing")


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
    _set(valid, path, value)
    msg = _error(valid)
    assert msg.startswith(message), msg


@pytest.mark.parametrize("value", [[], "manifest", 1, None])
def test_top_level_must_be_an_object(value):
    msg = _error(value)
    assert msg.startswith(f"manifest: expected a JSON object at the top level, found {type(value).__name__}")


# --- values ---------------------------------------------------------------------------------------------
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
    msg = _error(valid)
    assert msg.startswith(f"parts.projector.sha256: expected 64 lowercase hex digits, found {sha!r}"), (why, msg)


def test_bad_sha256_message_is_bounded(valid):
    valid["parts"]["llm"]["sha256"] = "x" * 10_000
    msg = _error(valid)
    assert msg.startswith("parts.llm.sha256: expected 64 lowercase hex digits") and len(msg) < 200


def test_unknown_part_role(valid):
    valid["parts"]["audio_encoder"] = copy.deepcopy(valid["parts"]["projector"])
    msg = _error(valid)
    assert msg.startswith("manifest.parts: unknown part roles ['audio_encoder']"), msg
    assert "known roles are ['vision_encoder', 'projector', 'llm']" in msg


@pytest.mark.parametrize("kind", ["tflite", "ONNX", "", "safetensors"])
def test_unknown_artifact_kind(valid, kind):
    valid["parts"]["vision_encoder"]["kind"] = kind
    from mmedge.manifest import ARTIFACT_KINDS

    assert _error(valid).startswith(f"parts.vision_encoder.kind: expected one of {ARTIFACT_KINDS}, found {kind!r}")


@pytest.mark.parametrize("role, kind", [("llm", "onnx"), ("llm", "pte"), ("vision_encoder", "gguf"), ("projector", "gguf")])
def test_kind_must_suit_the_role(valid, role, kind):
    valid["parts"][role]["kind"] = kind
    assert _error(valid).startswith(f"parts.{role}.kind: {kind!r} cannot hold the {role} part")


@pytest.mark.parametrize("fmt", ["mmedge", "gguf-bundle", "MMEDGE-BUNDLE", ""])
def test_wrong_format_name(valid, fmt):
    valid["format"] = fmt
    msg = _error(valid)
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


def test_version_error_is_a_manifest_error(valid):
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
    assert _error(valid).startswith("preprocess.image.image_std: a zero would divide by zero")


@pytest.mark.parametrize(
    "dim, index", [(-1, 1), (-576, 1), (True, 0), (3.0, 1), (None, 2), ([3], 0)]
)
def test_bad_shape_dims(valid, dim, index):
    valid["parts"]["projector"]["outputs"][0]["shape"][index] = dim
    msg = _error(valid)
    assert msg.startswith(
        f"parts.projector.outputs[0].shape[{index}]: expected a non-negative int or a symbolic name, found {dim!r}"
    ), msg


def test_zero_dim_and_symbolic_dims_are_valid(valid):
    valid["parts"]["llm"]["inputs"] = [{"name": "tokens", "shape": [0, "seq"], "dtype": "int32"}]
    assert Manifest.from_dict(valid).parts["llm"].inputs[0].shape == [0, "seq"]


def test_shape_must_be_a_list(valid):
    valid["parts"]["vision_encoder"]["inputs"][0]["shape"] = "batch,3,336,336"
    assert _error(valid).startswith("parts.vision_encoder.inputs[0].shape: expected list, found str")


def test_negative_size_bytes(valid):
    valid["parts"]["llm"]["size_bytes"] = -1
    assert _error(valid).startswith("parts.llm.size_bytes: expected >= 0, found -1")


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
    _set(valid, path, value)
    assert _error(valid).startswith(message)


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
        _delete(d, p)
        try:
            Manifest.from_dict(d)
            outcomes["ok"] += 1
        except ManifestError:
            outcomes["error"] += 1
    assert len(paths) == 71
    # required: 8 top level + preprocess.image + 4 in it (resize_mode, size, shortest_edge, resample)
    # + 2 crop_size keys + 3 parts + 3 x 5 part fields + 4 image fields = 37
    assert outcomes == {"ok": 71 - 37, "error": 37}


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
    assert message in _error(valid)


def test_negative_marker_token_id(valid):
    valid["image"]["marker_token_id"] = -1
    assert "image.marker_token_id: expected a token id >= 0" in _error(valid)
