"""The bundle manifest: schema, parsing with validation, and serialisation.

The manifest is plain JSON so that the C++ runtime can read it without Python. Parsing is
strict: a missing or mistyped field is a `ManifestError` naming the field, never a KeyError
from deep inside the runtime.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .audio_spec import AudioSlotSpec
from .errors import ManifestError, ManifestVersionError
# The media sections live beside this file; re-exported here, where callers have always found them.
from .image_spec import ImagePreprocessSpec, ImageSlotSpec, video_section
from .validation import get_field as _get
from .video_spec import VideoSlotSpec

FORMAT_NAME = "mmedge-bundle"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
# A manifest is a small text file; anything bigger is not one of ours.
MAX_MANIFEST_BYTES = 16 * 1024 * 1024

# The tensor parts (encoder, projector) by the bundle's input modality; every bundle also has the LLM.
# An audio encoder is its own role, so a runtime that knows only images refuses an audio bundle by name.
ROLES_BY_MODALITY = {"image": ("vision_encoder", "projector"), "audio": ("audio_encoder", "audio_projector")}
PART_ROLES = ("vision_encoder", "projector", "llm")  # an image bundle's roles
TENSOR_ROLES = tuple(r for roles in ROLES_BY_MODALITY.values() for r in roles)
ARTIFACT_KINDS = ("onnx", "pte", "mlpackage", "gguf")
# Artifacts that are folders (hashed as a sorted list of their files' hashes).
FOLDER_KINDS = ("mlpackage",)


@dataclass(frozen=True)
class TensorSpec:
    """A named input or output of a compiled part. Dimensions are ints or symbolic names."""

    name: str
    shape: list[int | str]
    dtype: str

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "TensorSpec":
        shape = _get(d, "shape", list, where)
        for i, dim in enumerate(shape):
            if isinstance(dim, bool) or not isinstance(dim, (int, str)) or (isinstance(dim, int) and dim < 0):
                raise ManifestError(f"{where}.shape[{i}]: expected a non-negative int or a symbolic name, found {dim!r}")
        return cls(name=_get(d, "name", str, where), shape=list(shape), dtype=_get(d, "dtype", str, where))


@dataclass(frozen=True)
class PartSpec:
    """One compiled part of the bundle (an ONNX graph, a GGUF file, ...)."""

    role: str
    file: str
    kind: str
    precision: str
    sha256: str
    size_bytes: int
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    # Target-specific facts: real GGUF tensor types, quantization settings, ...
    details: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, role: str, d: dict, where: str | None = None) -> "PartSpec":
        where = where or f"parts.{role}"
        kind = _get(d, "kind", str, where)
        if kind not in ARTIFACT_KINDS:
            raise ManifestError(f"{where}.kind: expected one of {ARTIFACT_KINDS}, found {kind!r}")
        if (role == "llm") != (kind == "gguf"):
            raise ManifestError(f"{where}.kind: {kind!r} cannot hold the {role} part (the LLM is GGUF, the others are not)")
        sha = _get(d, "sha256", str, where)
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ManifestError(f"{where}.sha256: expected 64 lowercase hex digits, found {sha[:80]!r}")
        size = _get(d, "size_bytes", int, where)
        if size < 0:
            raise ManifestError(f"{where}.size_bytes: expected >= 0, found {size}")
        return cls(
            role=role,
            file=_get(d, "file", str, where),
            kind=kind,
            precision=_get(d, "precision", str, where),
            sha256=sha,
            size_bytes=size,
            inputs=[TensorSpec.from_dict(t, f"{where}.inputs[{i}]") for i, t in enumerate(_get(d, "inputs", list, where, True, []))],
            outputs=[TensorSpec.from_dict(t, f"{where}.outputs[{i}]") for i, t in enumerate(_get(d, "outputs", list, where, True, []))],
            details=_get(d, "details", dict, where, True, {}),
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("role")
        return d


@dataclass(frozen=True)
class PromptSpec:
    """The family's chat template (Jinja, as the HF processor has it) and how to call it."""

    chat_template: str | None
    # Rendered when the template is absent: images first, then the text (LLaVA's own order).
    fallback_format: str = "{images}{text}"
    add_bos: bool = True
    # SentencePiece tokenizers with HF's Metaspace prepend_scheme 'first': one space goes before
    # the prompt when it starts with plain text (the GGUF itself adds none).
    prepend_space: bool = False
    # Position of the first prompt token (PaliGemma counts from 1).
    first_position: int = 0
    # The chat template flattened for runtimes without Jinja (native/): a single user turn renders
    # as before + image * n_images + text + after (`image` null: the template places images some
    # other way, so prompts must carry markers; `strip`: the text is stripped first, as str.strip).
    # Derived and checked at export (runtime/prompt.py `single_turn_frame`); null when the template
    # cannot be flattened, absent in older bundles.
    single_turn: dict | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["single_turn"] is None:
            del d["single_turn"]  # absent = no frame, as bundles written before it say
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PromptSpec":
        where = "prompt"
        return cls(
            chat_template=_get(d, "chat_template", (str, type(None)), where, True, None),
            fallback_format=_get(d, "fallback_format", str, where, True, "{images}{text}"),
            add_bos=_get(d, "add_bos", bool, where, True, True),
            prepend_space=_get(d, "prepend_space", bool, where, True, False),
            first_position=_first_position(_get(d, "first_position", int, where, True, 0)),
            single_turn=_single_turn(_get(d, "single_turn", (dict, type(None)), where, True, None)),
        )


def _single_turn(value: dict | None) -> dict | None:
    if value is None:
        return None
    where = "prompt.single_turn"
    frame = {"before": _get(value, "before", str, where), "after": _get(value, "after", str, where),
             "image": _get(value, "image", (str, type(None)), where, True, None)}
    if _get(value, "strip", bool, where, True, False):  # the template trims the user text; kept only when so
        frame["strip"] = True
    unknown = sorted(set(value) - set(frame) - {"strip"})
    if unknown:
        raise ManifestError(f"{where}: unknown fields {unknown}; expected before, after, image, strip")
    return frame


def _first_position(value: int) -> int:
    if not 0 <= value <= 1 << 20:
        raise ManifestError(f"prompt.first_position: expected 0 .. 2^20, found {value}")
    return value


def _labelled(parts: dict, alternatives: dict) -> list[tuple[str, "PartSpec"]]:
    out = [(f"parts.{role}", part) for role, part in parts.items()]
    for role, items in alternatives.items():
        out += [(f"alternatives.{role}[{i}]", part) for i, part in enumerate(items)]
    return out


@dataclass
class Manifest:
    family: str
    architecture: str
    parts: dict[str, PartSpec]
    image_preprocess: ImagePreprocessSpec | None  # None in an audio bundle
    image: ImageSlotSpec | None
    prompt: PromptSpec
    generation: dict = field(default_factory=dict)
    verification: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)
    created_by: str = ""
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION
    # The same tensor part compiled for other targets (`--target` given several times); the
    # runtime picks one per role (`select_part`).
    alternatives: dict[str, list[PartSpec]] = field(default_factory=dict)
    audio: AudioSlotSpec | None = None  # the audio section; exactly one of `image` and `audio` is set
    # Videos as sampled frames through the image parts (families whose HF processor takes videos).
    video: VideoSlotSpec | None = None

    @property
    def modality(self) -> str:
        return "audio" if self.audio is not None else "image"

    @property
    def tensor_roles(self) -> tuple[str, str]:
        """(encoder role, projector role) of this bundle's modality."""
        return ROLES_BY_MODALITY[self.modality]

    @property
    def media(self) -> ImageSlotSpec | AudioSlotSpec:
        """The slot of the bundle's modality: marker, marker token, embedding width, attention."""
        return self.audio if self.audio is not None else self.image

    def all_parts(self) -> list[tuple[str, PartSpec]]:
        """(label, part) for every artifact in the bundle, primary parts first."""
        return _labelled(self.parts, self.alternatives)

    def candidates(self, role: str) -> list[PartSpec]:
        return [self.parts[role], *self.alternatives.get(role, [])]

    # -- parsing ----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Any) -> "Manifest":
        if not isinstance(d, dict):
            raise ManifestError(f"manifest: expected a JSON object at the top level, found {type(d).__name__}")
        fmt = _get(d, "format", str, "manifest")
        if fmt != FORMAT_NAME:
            raise ManifestError(f"manifest.format: expected {FORMAT_NAME!r}, found {fmt!r}; this folder is not an mmedge bundle")
        version = _get(d, "format_version", int, "manifest")
        if version != FORMAT_VERSION:
            raise ManifestVersionError(
                f"manifest.format_version: this mmedge reads version {FORMAT_VERSION}, the bundle is version {version}; "
                "re-export it with this mmedge or upgrade mmedge"
            )
        if "audio" in d and "image" in d:
            raise ManifestError("manifest: has both an image and an audio section; a bundle takes one modality")
        modality = "audio" if "audio" in d else "image"
        roles = (*ROLES_BY_MODALITY[modality], "llm")
        parts_raw = _get(d, "parts", dict, "manifest")
        missing = [r for r in roles if r not in parts_raw]
        if missing:
            raise ManifestError(f"manifest.parts: missing {missing}; a bundle needs {list(roles)} (its input: {modality})")
        unknown = [r for r in parts_raw if r not in roles]
        if unknown:
            raise ManifestError(f"manifest.parts: unknown part roles {unknown}; known roles are {list(roles)} (its input: {modality})")
        parts = {role: PartSpec.from_dict(role, parts_raw[role]) for role in roles}
        alternatives = {}
        for role, items in _get(d, "alternatives", dict, "manifest", True, {}).items():
            if role not in roles[:2]:
                raise ManifestError(f"manifest.alternatives: {role!r} cannot have alternatives; only {list(roles[:2])} can")
            if not isinstance(items, list):
                raise ManifestError(f"manifest.alternatives.{role}: expected a list, found {type(items).__name__}")
            alternatives[role] = [PartSpec.from_dict(role, item, f"alternatives.{role}[{i}]") for i, item in enumerate(items)]
        files = [p.file for _, p in _labelled(parts, alternatives)]
        if len(set(files)) != len(files):
            raise ManifestError(f"manifest: two parts name the same file ({sorted(f for f in files if files.count(f) > 1)[0]})")
        video = None
        if modality == "audio":
            image_preprocess, image = None, None
            if "video" in d:
                raise ManifestError("manifest: an audio bundle has a video section; videos go through image parts")
        else:
            preprocess = _get(d, "preprocess", dict, "manifest")
            image_preprocess = ImagePreprocessSpec.from_dict(_get(preprocess, "image", dict, "preprocess"))
            image = ImageSlotSpec.from_dict(_get(d, "image", dict, "manifest"))
            if "video" in d:
                video = video_section(d["video"], image)
        return cls(
            family=_get(d, "family", str, "manifest"),
            architecture=_get(d, "architecture", str, "manifest"),
            parts=parts,
            image_preprocess=image_preprocess,
            image=image,
            prompt=PromptSpec.from_dict(_get(d, "prompt", dict, "manifest")),
            generation=_get(d, "generation", dict, "manifest", True, {}),
            verification=_get(d, "verification", dict, "manifest", True, {}),
            source=_get(d, "source", dict, "manifest", True, {}),
            created_by=_get(d, "created_by", str, "manifest", True, ""),
            alternatives=alternatives,
            audio=AudioSlotSpec.from_dict(_get(d, "audio", dict, "manifest")) if modality == "audio" else None,
            video=video,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> "Manifest":
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as e:
            raise ManifestError(f"manifest.json is not valid JSON ({e}); the bundle is corrupted, re-export it") from None
        return cls.from_dict(data)

    # -- writing ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "format_version": self.format_version,
            "created_by": self.created_by,
            "family": self.family,
            "architecture": self.architecture,
            "source": self.source,
            "parts": {role: part.to_dict() for role, part in self.parts.items()},
            **({"alternatives": {r: [p.to_dict() for p in ps] for r, ps in self.alternatives.items()}}
               if self.alternatives else {}),
            **self._media_dict(),
            "prompt": self.prompt.to_dict(),
            "generation": self.generation,
            "verification": self.verification,
        }

    def _media_dict(self) -> dict:
        if self.audio is not None:
            return {"audio": self.audio.to_dict()}
        return {"preprocess": {"image": asdict(self.image_preprocess)},
                "image": {**{k: v for k, v in asdict(self.image).items() if k != "layout"},
                          "layout": self.image.layout.to_dict()},
                **({"video": self.video.to_dict()} if self.video is not None else {})}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"
