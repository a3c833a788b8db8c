"""Qwen2-VL's patches, step for step as transformers' PIL image processor, processor and model do it.

1. smart_resize: both sides rounded to multiples of patch_size * merge_size, then scaled down
   (floor) or up (ceil) through the square root of the pixel ratio when the area leaves
   [min_pixels, max_pixels] (Python's round, math.floor/ceil: the same integers as transformers).
2. PIL resize on uint8 pixels with the processor's filter; rescale and normalize (preprocess spec).
3. Patches in transformers' order: merge group by merge group (row-major over the merged grid),
   inside a group row-major; each patch flattened as (channel, time, row, column), the image
   repeated `temporal_patch_size` times on the time axis (a still image is a one-frame video).
4. Rotary ids (row, column) per patch in the same order, as the vision model derives them from
   image_grid_thw; M-RoPE offsets (0, row, column) per merged row, as get_rope_index places them.
5. Qwen2.5-VL (`window_size`): merge groups reordered window by window, as the vision model's
   get_vision_window_index orders them, with each patch's window number as a third encoder input;
   `assemble` puts the projector's rows back in image order.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

from mmedge.errors import ImageError, ManifestError
from mmedge.image_layouts import Qwen2VLPatches

from ..preprocess import normalize_pixels, prepared_rgb, resize_rgb
from .base import ImageLayout, PreparedImage, register_layout

POSITION_INPUT = "position_ids"
WINDOW_INPUT = "window_ids"
# transformers refuses images more elongated than this.
MAX_ASPECT = 200


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(height, width) multiples of `factor` with min_pixels <= area <= max_pixels, aspect kept closely."""
    if max(height, width) / min(height, width) > MAX_ASPECT:
        raise ImageError(f"the image is {width}x{height}: Qwen2-VL takes aspect ratios up to {MAX_ASPECT}:1; crop it")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def patchify(pixels: np.ndarray, patch: int, merge: int, temporal: int) -> np.ndarray:
    """float32 [C, H, W] -> [grid_h * grid_w, C * temporal * patch * patch] in transformers' order
    (a still image: the frame repeated `temporal` times)."""
    return patchify_frames(np.broadcast_to(pixels[None], (temporal, *pixels.shape)), patch, merge)


def patchify_frames(frames: np.ndarray, patch: int, merge: int) -> np.ndarray:
    """One temporal group, float32 [T, C, H, W] -> [grid_h * grid_w, C * T * patch * patch], in
    the video processor's order: patches merge group by merge group, each flattened (C, T, py, px)."""
    t, c, h, w = frames.shape
    gh, gw = h // patch, w // patch
    x = frames.reshape(t, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.transpose(2, 5, 3, 6, 1, 0, 4, 7)  # (group row, group col, row in group, col in group, C, T, py, px)
    return np.ascontiguousarray(x.reshape(gh * gw, c * t * patch * patch), dtype=np.float32)


def rotary_ids(grid_h: int, grid_w: int, merge: int) -> np.ndarray:
    """int64 [grid_h * grid_w, 2]: each patch's (row, column), in patchify's order."""
    rows, cols = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
    shape = (grid_h // merge, merge, grid_w // merge, merge)
    order = [ids.reshape(shape).transpose(0, 2, 1, 3).ravel() for ids in (rows, cols)]
    return np.stack(order, axis=-1).astype(np.int64)


def mrope_offsets(grid_h: int, grid_w: int, merge: int) -> np.ndarray:
    """int64 [3, rows]: (temporal, height, width) offsets of each merged row from the image's start."""
    rows, cols = np.meshgrid(np.arange(grid_h // merge), np.arange(grid_w // merge), indexing="ij")
    return np.stack([np.zeros(rows.size, np.int64), rows.ravel(), cols.ravel()]).astype(np.int64)


def window_order(grid_h: int, grid_w: int, merge: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(merge-group order, window number of each group in that order) for windows of `window`
    merge groups a side, row-major windows over the merged grid (the last ones cut off)."""
    rows, cols = np.meshgrid(np.arange(grid_h // merge), np.arange(grid_w // merge), indexing="ij")
    key = np.lexsort(((cols % window).ravel(), (rows % window).ravel(), (cols // window).ravel(), (rows // window).ravel()))
    windows_across = -(-(grid_w // merge) // window)
    window_of = ((rows // window) * windows_across + cols // window).ravel()
    return key.astype(np.int64), window_of[key].astype(np.int64)


def patch_inputs(spec: Qwen2VLPatches, grid_h: int, grid_w: int) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The encoder's inputs besides the patches for a grid_h x grid_w patch grid, and the merge-group
    order the patches must be put in (None: the processor's own order)."""
    ids = rotary_ids(grid_h, grid_w, spec.merge_size)
    if spec.window_size is None:
        return {POSITION_INPUT: ids}, None
    order, window_of = window_order(grid_h, grid_w, spec.merge_size, spec.window_size // spec.factor)
    unit = spec.merge_size**2
    return {POSITION_INPUT: in_group_order(ids, order, unit), WINDOW_INPUT: np.repeat(window_of, unit)}, order


def in_group_order(x: np.ndarray, order: np.ndarray, unit: int) -> np.ndarray:
    """Rows of `x` (patches, merge group by merge group) with the groups taken in `order`."""
    return x.reshape(len(order), unit, -1)[order].reshape(x.shape)


@register_layout
class Qwen2VLPatchesLayout(ImageLayout):
    kind = "qwen2vl-patches"
    spec: Qwen2VLPatches

    def __init__(self, spec, preprocess, slot):
        super().__init__(spec, preprocess, slot)
        # The preprocess spec carries the filter and normalisation; its size is the resize unit.
        if preprocess.output_hw() != (spec.factor, spec.factor):
            raise ManifestError(f"preprocess.image: the size must be the resize unit {spec.factor}x{spec.factor} "
                                f"(patch_size * merge_size), found {preprocess.output_hw()}")
        if slot.tokens_per_image != 1:
            raise ManifestError(f"image.tokens_per_image: a qwen2vl-patches layout gives 1 row per merge group, "
                                f"found {slot.tokens_per_image}")

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """(grid_h, grid_w) in patches for an image of this size (image_grid_thw without the 1)."""
        s = self.spec
        h, w = smart_resize(height, width, s.factor, s.min_pixels, s.max_pixels)
        return h // s.patch_size, w // s.patch_size

    def prepare(self, image: Image.Image) -> PreparedImage:
        s, pre = self.spec, self.preprocess
        image = prepared_rgb(image, pre)
        grid_h, grid_w = self.grid(image.height, image.width)
        pixels = normalize_pixels(resize_rgb(image, grid_h * s.patch_size, grid_w * s.patch_size, pre), pre)
        n = grid_h * grid_w // s.merge_size**2
        patches = patchify(pixels, s.patch_size, s.merge_size, s.temporal_patch_size)
        inputs, order = patch_inputs(s, grid_h, grid_w)
        info: dict = {"grid_thw": (1, grid_h, grid_w)}
        if order is not None:
            patches = in_group_order(patches, order, s.merge_size**2)
            info["window_order"] = order
        return PreparedImage(tiles=patches, text=s.image_pad_token * n, n_rows=n, info=info, extra_inputs=inputs,
                             grid=mrope_offsets(grid_h, grid_w, s.merge_size))

    def projected_shape(self, prepared: PreparedImage) -> tuple[int, ...]:
        return (prepared.n_rows, self.slot.embedding_dim)

    def assemble(self, prepared: PreparedImage, tile_embeddings: np.ndarray) -> np.ndarray:
        order = prepared.info.get("window_order")
        if order is None:
            return tile_embeddings
        rows = np.empty_like(tile_embeddings)
        rows[order] = tile_embeddings  # the projector's j-th row is merge group order[j]
        return rows
