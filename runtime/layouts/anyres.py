"""LLaVA-NeXT / LLaVA-OneVision "anyres", step for step as transformers' PIL image processor,
processor (token count) and model (`pack_image_features`) do it.

prepare:
1. Pick the best [height, width] of `grid_pinpoints` for the image (most of the image's pixels
   kept, then least padding), resize keeping the aspect ratio (the fitted side exactly, the other
   rounded up, capped), pad with black (0) to the pinpoint, the odd pixel after the image.
2. Tiles row by row, after the base view (the whole image squashed to one tile). Every resize is
   PIL on uint8 pixels with the processor's filter, then each tile is normalized.
assemble (on the projector's rows per tile, all in float32):
3. Base tile rows first; then the tiles' feature grid put back together, the rows/columns that
   only saw padding cut off (transformers' integer arithmetic), bilinearly pooled down when the
   grid is over `max_num_patches` tiles' worth by more than 10% (OneVision), `image_newline`
   after each row.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from mmedge.errors import ManifestError
from mmedge.image_layouts import AnyRes

from ..preprocess import normalize_pixels, prepared_rgb, resize_rgb
from .base import ImageLayout, PreparedImage, register_layout

# OneVision pools only when the grid exceeds max_num_patches tiles by more than this ratio.
POOL_TOLERANCE = 1.1


def best_resolution(height: int, width: int, pinpoints) -> tuple[int, int]:
    """The pinpoint keeping most of the image's pixels, ties to the least padding (first wins)."""
    best, best_effective, best_wasted = None, 0, float("inf")
    for ph, pw in pinpoints:
        scale = min(pw / width, ph / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        wasted = pw * ph - effective
        if effective > best_effective or (effective == best_effective and wasted < best_wasted):
            best, best_effective, best_wasted = (ph, pw), effective, wasted
    return best


def fitted_size(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int]:
    """The image resized into the target, aspect kept: the limiting side exact, the other rounded up."""
    scale_w, scale_h = target_w / width, target_h / height
    if scale_w < scale_h:
        return min(math.ceil(height * scale_w), target_h), target_w
    return target_h, min(math.ceil(width * scale_h), target_w)


def unpadded_window(height: int, width: int, grid_h: int, grid_w: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the feature grid that covers image, not padding.

    The same float expression and 7-digit rounding as transformers, so that the kept size is the
    one the processor counted tokens for."""
    if width / height > grid_w / grid_h:
        kept = int(round(height * (grid_w / width), 7))
        pad = (grid_h - kept) // 2
        return pad, grid_h - pad, 0, grid_w
    kept = int(round(width * (grid_h / height), 7))
    pad = (grid_w - kept) // 2
    return 0, grid_h, pad, grid_w - pad


def pooled_size(height: int, width: int, feature_side: int, max_num_patches: int | None) -> tuple[int, int] | None:
    """OneVision's anyres_max_N: the size the grid is pooled to, or None when it is kept."""
    if max_num_patches is None:
        return None
    ratio = math.sqrt(height * width / (max_num_patches * feature_side**2))
    if ratio <= POOL_TOLERANCE:
        return None
    return int(height // ratio), int(width // ratio)


def _fma32(a, b, c) -> np.ndarray:
    """float32 a*b+c rounded once, as a fused multiply-add: the float32 product is exact in float64."""
    return (np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64)).astype(np.float32)


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """torch's bilinear source taps (align_corners=False, no antialias) as its CPU kernel computes them:
    float32 scale, source position scale*(i+0.5)-0.5 as one fused multiply-add (torch's x86-64 AVX2
    and AVX-512 kernels and its ARM64 builds compile it so; measured to the bit), clamped at 0.
    torch's portable x86 kernel (ATEN_CPU_CAPABILITY=default, CPUs without AVX2) rounds the product
    first: the same taps, weights an ulp apart (tested under each capability)."""
    scale = np.float32(n_in) / np.float32(n_out)
    src = np.maximum(_fma32(scale, np.arange(n_out, dtype=np.float32) + np.float32(0.5), np.float32(-0.5)), np.float32(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    lam = np.clip(src - i0.astype(np.float32), np.float32(0), np.float32(1)).astype(np.float32)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (np.float32(1) - lam).astype(np.float32), lam


def _lerp(a: np.ndarray, b: np.ndarray, wa: np.ndarray, wb: np.ndarray) -> np.ndarray:
    return _fma32(b, wb, (a * wa).astype(np.float32))


def bilinear_resize(grid: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """[H, W, D] float32 -> [out_h, out_w, D] as torch's F.interpolate(mode='bilinear'): the same taps
    and weights (bit-exact), each row blended along the width, then the two rows. torch's own
    summation order is not reproduced to the bit: results differ from it by about 1 ulp."""
    h0, h1, wh0, wh1 = _linear_taps(grid.shape[0], out_h)
    c0, c1, wc0, wc1 = _linear_taps(grid.shape[1], out_w)
    wc0, wc1, wh0, wh1 = wc0[None, :, None], wc1[None, :, None], wh0[:, None, None], wh1[:, None, None]
    top = _lerp(grid[h0][:, c0], grid[h0][:, c1], wc0, wc1)
    bottom = _lerp(grid[h1][:, c0], grid[h1][:, c1], wc0, wc1)
    return _lerp(top, bottom, wh0, wh1)


@dataclass(frozen=True)
class AnyResPlan:
    """Where one image's features go: the tile grid, the kept window of the feature grid, the pooled size."""

    rows: int  # tiles down
    cols: int  # tiles across
    window: tuple[int, int, int, int]  # top, bottom, left, right in feature cells
    pooled: tuple[int, int] | None

    def grid_shape(self) -> tuple[int, int]:
        top, bottom, left, right = self.window
        return self.pooled or (bottom - top, right - left)


@register_layout
class AnyResLayout(ImageLayout):
    kind = "anyres"
    spec: AnyRes

    def __init__(self, spec, preprocess, slot):
        super().__init__(spec, preprocess, slot)
        if spec.feature_side**2 != slot.tokens_per_image:
            raise ManifestError(f"image.layout.feature_side: {spec.feature_side}^2 must equal image.tokens_per_image "
                                f"({slot.tokens_per_image}); the bundle's parts do not match its layout")
        if len(spec.image_newline) != slot.embedding_dim:
            raise ManifestError(f"image.layout.image_newline: expected {slot.embedding_dim} values (image.embedding_dim), "
                                f"found {len(spec.image_newline)}")
        if preprocess.output_hw() != (spec.tile_size, spec.tile_size):
            raise ManifestError(f"preprocess.image: the encoder input must be one {spec.tile_size}-pixel tile, "
                                f"found {preprocess.output_hw()}")
        self.newline = np.asarray(spec.image_newline, dtype=np.float32)

    def plan(self, height: int, width: int) -> AnyResPlan:
        s = self.spec
        best_h, best_w = best_resolution(height, width, s.grid_pinpoints)
        rows, cols = best_h // s.tile_size, best_w // s.tile_size
        window = unpadded_window(height, width, rows * s.feature_side, cols * s.feature_side)
        top, bottom, left, right = window
        return AnyResPlan(rows, cols, window, pooled_size(bottom - top, right - left, s.feature_side, s.max_num_patches))

    def n_rows(self, plan: AnyResPlan) -> int:
        h, w = plan.grid_shape()
        return self.slot.tokens_per_image + h * (w + 1)

    def prepare(self, image: Image.Image) -> PreparedImage:
        s, pre, t = self.spec, self.preprocess, self.spec.tile_size
        image = prepared_rgb(image, pre)
        height, width = image.height, image.width
        best_h, best_w = best_resolution(height, width, s.grid_pinpoints)
        new_h, new_w = fitted_size(height, width, best_h, best_w)
        padded = np.zeros((best_h, best_w, 3), dtype=np.uint8)
        top, left = (best_h - new_h) // 2, (best_w - new_w) // 2
        padded[top:top + new_h, left:left + new_w] = resize_rgb(image, new_h, new_w, pre)
        views = [resize_rgb(image, t, t, pre)]
        views += [padded[r:r + t, c:c + t] for r in range(0, best_h, t) for c in range(0, best_w, t)]
        plan = self.plan(height, width)
        n = self.n_rows(plan)
        return PreparedImage(tiles=np.stack([normalize_pixels(v, pre) for v in views]), text=self.slot.marker * n,
                             n_rows=n, info={"plan": plan})

    def assemble(self, prepared: PreparedImage, tile_embeddings: np.ndarray) -> np.ndarray:
        plan: AnyResPlan = prepared.info["plan"]
        side, dim = self.spec.feature_side, tile_embeddings.shape[-1]
        base = tile_embeddings[0]
        grid = (tile_embeddings[1:].reshape(plan.rows, plan.cols, side, side, dim)
                .transpose(0, 2, 1, 3, 4).reshape(plan.rows * side, plan.cols * side, dim))
        top, bottom, left, right = plan.window
        grid = grid[top:bottom, left:right]
        if plan.pooled is not None:
            grid = bilinear_resize(np.ascontiguousarray(grid, dtype=np.float32), *plan.pooled)
        newline = np.broadcast_to(self.newline, (grid.shape[0], 1, dim))
        rows = np.concatenate([grid, newline], axis=1).reshape(-1, dim)
        return np.concatenate([base, rows]).astype(np.float32, copy=False)
