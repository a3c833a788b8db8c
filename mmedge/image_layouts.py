"""How a family turns one image into encoder inputs and prompt text, as manifest data.

A layout names the way an image is cut into encoder inputs (one view, tiles plus a global
view, ...) and what the image's marker expands to in the prompt. The runtime implements each
kind (`mmedge/runtime/layouts/`); this module only parses and validates the data, so that
`mmedge/` stays free of numpy and the C++ runtime has a plain JSON contract to follow.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from .errors import ManifestError
from .validation import get_field


def _side(d: dict, key: str, where: str, default: int | None = None) -> int:
    value = get_field(d, key, int, where, default is not None, default)
    if not 1 <= value <= 8192:
        raise ManifestError(f"{where}.{key}: expected 1..8192, found {value}")
    return value


def token_text(d: dict, key: str, where: str) -> str:
    value = get_field(d, key, str, where)
    if not value or len(value) > 256:
        raise ManifestError(f"{where}.{key}: expected a token's text (1..256 characters), found {value!r}")
    return value


@dataclass(frozen=True)
class LayoutSpec:
    kind: ClassVar[str]

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "LayoutSpec":
        return cls()

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class SingleView(LayoutSpec):
    """One encoder input per image (preprocess spec as is); the marker expands to
    `tokens_per_image` image tokens (LLaVA-1.5)."""

    kind: ClassVar[str] = "single"


@dataclass(frozen=True)
class SingleViewWrapped(LayoutSpec):
    """One encoder input per image; the marker expands to `before`, `tokens_per_image` copies of
    `image_token`, then `after` (Gemma 3: "\\n\\n<start_of_image>", <image_soft_token>..., "<end_of_image>\\n\\n")."""

    kind: ClassVar[str] = "single-wrapped"
    image_token: str
    before: str = ""
    after: str = ""

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "SingleViewWrapped":
        return cls(image_token=token_text(d, "image_token", where), before=_wrap_text(d, "before", where),
                   after=_wrap_text(d, "after", where))


def _wrap_text(d: dict, key: str, where: str) -> str:
    value = get_field(d, key, str, where, True, "")
    if len(value) > 1024:
        raise ManifestError(f"{where}.{key}: expected at most 1024 characters, found {len(value)}")
    return value


@dataclass(frozen=True)
class Idefics3Tiles(LayoutSpec):
    """Idefics3 / SmolVLM: resize so the longest edge is `longest_edge`, round both sides up to
    multiples of `tile_size`, cut tiles row by row, then add the whole image resized to one tile
    (the global view). The marker expands to row/column tags around each tile's image tokens."""

    kind: ClassVar[str] = "idefics3-tiles"
    longest_edge: int
    tile_size: int
    split: bool
    image_token: str
    fake_image_token: str
    global_image_token: str
    # transformers caps the resized image at 4096 pixels a side before tiling.
    max_side: int = 4096

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "Idefics3Tiles":
        spec = cls(
            longest_edge=_side(d, "longest_edge", where),
            tile_size=_side(d, "tile_size", where),
            split=get_field(d, "split", bool, where),
            image_token=token_text(d, "image_token", where),
            fake_image_token=token_text(d, "fake_image_token", where),
            global_image_token=token_text(d, "global_image_token", where),
            max_side=_side(d, "max_side", where, 4096),
        )
        if spec.tile_size > spec.max_side:
            raise ManifestError(f"{where}.tile_size: {spec.tile_size} exceeds max_side {spec.max_side}")
        return spec


def _pinpoints(d: dict, where: str, tile: int) -> tuple[tuple[int, int], ...]:
    value = get_field(d, "grid_pinpoints", list, where)
    if not 1 <= len(value) <= 1024:
        raise ManifestError(f"{where}.grid_pinpoints: expected 1..1024 [height, width] pairs, found {len(value)}")
    out = []
    for i, pair in enumerate(value):
        if (not isinstance(pair, list) or len(pair) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 65536 for v in pair)):
            raise ManifestError(f"{where}.grid_pinpoints[{i}]: expected [height, width], two ints in 1..65536, found {pair!r}")
        if pair[0] % tile or pair[1] % tile:
            raise ManifestError(f"{where}.grid_pinpoints[{i}]: {pair} is not a whole number of {tile}-pixel tiles")
        out.append((pair[0], pair[1]))
    return tuple(out)


def _floats(d: dict, key: str, where: str) -> tuple[float, ...]:
    value = get_field(d, key, list, where)
    if not 1 <= len(value) <= 1 << 20:
        raise ManifestError(f"{where}.{key}: expected 1..2^20 numbers, found {len(value)}")
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
            raise ManifestError(f"{where}.{key}[{i}]: expected a finite number, found {v!r}")
    return tuple(float(v) for v in value)


@dataclass(frozen=True)
class AnyRes(LayoutSpec):
    """LLaVA-NeXT / LLaVA-OneVision "anyres": the image is resized (aspect kept) and zero-padded to the
    best of `grid_pinpoints` ([height, width] in pixels, whole tiles), cut into `tile_size` tiles row
    by row, after the whole image squashed to one tile (the base view). Embeddings: the base tile's
    rows, then the tiles' feature grid (`feature_side` per tile side) with the padding cut off, pooled
    down when it holds more than `max_num_patches` tiles' worth (OneVision's anyres_max_N; None: never),
    with `image_newline` (a model weight, float32 values) after each grid row. The marker expands to
    one marker per row."""

    kind: ClassVar[str] = "anyres"
    tile_size: int
    grid_pinpoints: tuple[tuple[int, int], ...]
    feature_side: int
    image_newline: tuple[float, ...]
    max_num_patches: int | None = None

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "AnyRes":
        tile = _side(d, "tile_size", where)
        max_patches = get_field(d, "max_num_patches", (int, type(None)), where, True, None)
        if max_patches is not None and not 1 <= max_patches <= 1024:
            raise ManifestError(f"{where}.max_num_patches: expected 1..1024 or null, found {max_patches}")
        spec = cls(
            tile_size=tile,
            grid_pinpoints=_pinpoints(d, where, tile),
            feature_side=_side(d, "feature_side", where),
            image_newline=_floats(d, "image_newline", where),
            max_num_patches=max_patches,
        )
        if spec.feature_side > spec.tile_size:
            raise ManifestError(f"{where}.feature_side: {spec.feature_side} exceeds tile_size {spec.tile_size}")
        return spec

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["grid_pinpoints"] = [list(p) for p in self.grid_pinpoints]
        d["image_newline"] = list(self.image_newline)
        return d


def _bounded(d: dict, key: str, where: str, low: int, high: int) -> int:
    value = get_field(d, key, int, where)
    if not low <= value <= high:
        raise ManifestError(f"{where}.{key}: expected {low}..{high}, found {value}")
    return value


@dataclass(frozen=True)
class Qwen2VLPatches(LayoutSpec):
    """Qwen2-VL: the image is resized to multiples of patch_size * merge_size with between
    `min_pixels` and `max_pixels` pixels (aspect kept as closely as possible, HF's smart_resize), cut
    into patch_size patches (each repeated `temporal_patch_size` times, as a one-frame video),
    ordered merge group by merge group. The encoder takes one image's patches and their (row,
    column) rotary ids; the projector merges each merge_size x merge_size group into one row. The
    marker expands to one `image_pad_token` per row; the rows take M-RoPE positions on their grid.

    `window_size` (pixels, Qwen2.5-VL; None for Qwen2-VL): the merge groups are reordered window by
    window (row-major windows of window_size pixels) before the encoder, which also takes each
    patch's window number (its windowed blocks attend within a window); the rows are put back in
    image order after the projector."""

    kind: ClassVar[str] = "qwen2vl-patches"
    patch_size: int
    temporal_patch_size: int
    merge_size: int
    min_pixels: int
    max_pixels: int
    image_pad_token: str
    window_size: int | None = None

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "Qwen2VLPatches":
        window = get_field(d, "window_size", (int, type(None)), where, True, None)
        spec = cls(
            patch_size=_bounded(d, "patch_size", where, 1, 1024),
            temporal_patch_size=_bounded(d, "temporal_patch_size", where, 1, 16),
            merge_size=_bounded(d, "merge_size", where, 1, 16),
            min_pixels=_bounded(d, "min_pixels", where, 1, 1 << 28),
            max_pixels=_bounded(d, "max_pixels", where, 1, 1 << 28),
            image_pad_token=token_text(d, "image_pad_token", where),
            window_size=window,
        )
        if window is not None and not (1 <= window <= 8192 and window % spec.factor == 0):
            raise ManifestError(f"{where}.window_size: expected a multiple of {spec.factor} (patch_size * merge_size) "
                                f"in 1..8192 or null, found {window}")
        if spec.min_pixels > spec.max_pixels:
            raise ManifestError(f"{where}.min_pixels: {spec.min_pixels} exceeds max_pixels {spec.max_pixels}")
        if spec.max_pixels < spec.factor**2:
            raise ManifestError(f"{where}.max_pixels: {spec.max_pixels} is less than one merge group "
                                f"({spec.factor}x{spec.factor} pixels)")
        return spec

    @property
    def factor(self) -> int:
        """Resized sides are multiples of this."""
        return self.patch_size * self.merge_size


def _strings(d: dict, key: str, where: str, low: int, high: int) -> tuple[str, ...]:
    value = get_field(d, key, list, where)
    if not low <= len(value) <= high:
        raise ManifestError(f"{where}.{key}: expected {low}..{high} strings, found {len(value)}")
    for i, v in enumerate(value):
        if not isinstance(v, str) or not v or len(v) > 256:
            raise ManifestError(f"{where}.{key}[{i}]: expected a token's text (1..256 characters), found {v!r}")
    return tuple(value)


@dataclass(frozen=True)
class QFormerPrefix(LayoutSpec):
    """InstructBLIP: one view per image (preprocess spec as is), one image per prompt. The image's
    `tokens_per_image` rows go before the prompt's first token (before BOS, where the HF processor
    puts the query tokens). The projector (Q-Former) also reads the prompt: the formatted prompt
    with the image marker removed, tokenized by BERT WordPiece ([CLS] ... [SEP]) with this
    vocabulary (`vocab[i]` is id i) and these normalizer options; `added_tokens` are matched on
    the raw text first. A prompt longer than `max_length` Q-Former tokens is refused."""

    kind: ClassVar[str] = "qformer-prefix"
    vocab: tuple[str, ...]
    added_tokens: tuple[str, ...]
    unk_token: str
    cls_token: str
    sep_token: str
    lowercase: bool
    strip_accents: bool
    max_length: int
    max_input_chars_per_word: int = 100

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "QFormerPrefix":
        spec = cls(
            vocab=_strings(d, "vocab", where, 1, 1 << 20),
            added_tokens=_strings(d, "added_tokens", where, 0, 1 << 16),
            unk_token=token_text(d, "unk_token", where),
            cls_token=token_text(d, "cls_token", where),
            sep_token=token_text(d, "sep_token", where),
            lowercase=get_field(d, "lowercase", bool, where),
            strip_accents=get_field(d, "strip_accents", bool, where),
            max_length=_bounded(d, "max_length", where, 3, 1 << 16),
            max_input_chars_per_word=_bounded(d, "max_input_chars_per_word", where, 1, 1 << 16),
        )
        known = set(spec.vocab)
        for name in (spec.unk_token, spec.cls_token, spec.sep_token, *spec.added_tokens):
            if name not in known:
                raise ManifestError(f"{where}: token {name!r} is not in the vocab")
        return spec

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["vocab"], d["added_tokens"] = list(self.vocab), list(self.added_tokens)
        return d


LAYOUTS: dict[str, type[LayoutSpec]] = {
    cls.kind: cls for cls in (SingleView, SingleViewWrapped, Idefics3Tiles, AnyRes, Qwen2VLPatches, QFormerPrefix)
}


def parse_layout(d: Any, where: str = "image.layout") -> LayoutSpec:
    if d is None:
        return SingleView()
    if not isinstance(d, dict):
        raise ManifestError(f"{where}: expected a JSON object, found {type(d).__name__}")
    kind = get_field(d, "kind", str, where)
    if kind not in LAYOUTS:
        raise ManifestError(f"{where}.kind: {kind!r} is not a layout this mmedge knows ({sorted(LAYOUTS)}); upgrade mmedge")
    return LAYOUTS[kind].from_dict(d, where)
