"""Bit-exact numpy port of torch's uint8 antialiased bicubic / bilinear resize.

What this reproduces
--------------------
``torch.nn.functional.interpolate(x, size=(out_h, out_w), mode="bicubic" | "bilinear",
antialias=True, align_corners=False)`` for a ``uint8`` tensor ``x`` of shape ``[N, 3, H, W]`` on the
CPU. Hugging Face's video processors resize decoded uint8 frames with torchvision's ``resize``, and
on CPU torchvision hands uint8 bicubic (and bilinear) antialiased resizes straight to that native
uint8 kernel (``aten/src/ATen/native/cpu/UpSampleKernel.cpp`` and, on AVX2 builds,
``UpSampleKernelAVXAntialias.h``). The torch-free runtime has to feed the exported vision encoder
the very same pixels, and PIL's bicubic resize is not a substitute: it differs by 1-2 levels on
roughly 0.3% of the values.

The algorithm (checked against torch 2.13 on x86-64 / AVX2, where every tested case is bit-exact)
------------------------------------------------------------------------------------------------
Per axis (input size ``n_in``, output size ``n_out``) the weights are built PIL-style in float64:

* ``scale = n_in / n_out``; ``support = r * scale`` when downsampling (``scale >= 1``), else ``r``,
  with filter radius ``r = 2`` (bicubic, Keys ``a = -0.5``) or ``r = 1`` (bilinear, triangle);
  the filter argument is multiplied by ``1 / scale`` when downsampling.
* output ``i`` has centre ``c = scale * (i + 0.5)``, taps ``xmin = max(int(c - support + 0.5), 0)``
  to ``min(int(c + support + 0.5), n_in)`` (``int`` truncates), at most ``2 * ceil(support) + 1``
  of them; tap ``k`` weighs ``filter((xmin + k - c + 0.5) * invscale)`` and the taps are divided by
  their (left-to-right) sum.
* The weights become int16 fixed point: the precision ``p`` is the largest value in ``0..22``
  such that ``int(0.5 + w_max * 2**p) < 2**15`` with ``w_max`` the largest normalised weight of the
  whole axis (``p`` is one less than the first value failing that test, scanned from ``0``);
  each weight is ``w * 2**p`` rounded half away from zero.
* A pass computes ``clamp((2**(p-1) + sum_k pixel_k * weight_k) >> p, 0, 255)`` in int32 (``>>`` is
  an arithmetic shift, i.e. floor) and stores uint8.

The horizontal (width) pass runs first, over every input row, then the vertical (height) pass on
its uint8 result. A pass is skipped when that axis keeps its size, and the input is returned
unchanged when both do.

On x86-64 this matches, bit for bit, both code paths torch has for uint8 inputs with at most 4
channels: its AVX2 kernel (which ``ATEN_CPU_CAPABILITY=avx2`` and ``avx512`` both run: it has no
AVX-512 variant) and its portable one (``default``, CPUs without AVX2): the same integer arithmetic,
tested under each capability, except that the portable one misreads a one-pixel-wide image (up to
242 levels off, where torch's float kernel agrees with us), which mmedge never resizes. torch's ARM
builds take the portable path, unverified on ARM here. Float inputs use an unrelated float kernel
and are out of scope.

No torch import here, ever: this module belongs to the torch-free runtime.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["resize_uint8", "axis_weights"]

# interp_size / 2 in torch: the filter's radius in input pixels at scale 1.
_RADIUS = {"bicubic": 2.0, "bilinear": 1.0}


def _bicubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution with a = -0.5, evaluated in the same operation order as torch."""
    a = -0.5
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _triangle(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


_FILTERS = {"bicubic": _bicubic, "bilinear": _triangle}


def axis_weights(n_in: int, n_out: int, mode: str = "bicubic") -> tuple[np.ndarray, np.ndarray, int]:
    """Per-axis tables for one resampling pass: ``(index [n_out, K] int64, weight [n_out, K] int32,
    precision)``. Output ``i`` is ``clamp((2**(p-1) + sum_k in[index[i, k]] * weight[i, k]) >> p)``.
    Unused taps carry weight 0 and a valid (clamped) index."""
    if mode not in _FILTERS:
        raise ValueError(f"mode must be one of {sorted(_FILTERS)}, got {mode!r}")
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be positive, got {n_in} -> {n_out}")
    filt = _FILTERS[mode]
    scale = float(n_in) / float(n_out)
    if scale >= 1.0:
        support = _RADIUS[mode] * scale
        invscale = 1.0 / scale
    else:
        support = _RADIUS[mode]
        invscale = 1.0
    n_taps = int(math.ceil(support)) * 2 + 1

    centre = scale * (np.arange(n_out, dtype=np.float64) + 0.5)
    # static_cast<int64_t> truncates toward zero; np.trunc does the same before the int cast
    xmin = np.maximum(np.trunc(centre - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum(np.trunc(centre + support + 0.5).astype(np.int64), n_in)
    xsize = np.clip(xmax - xmin, 0, n_taps)

    taps = np.arange(n_taps, dtype=np.int64)
    used = taps[None, :] < xsize[:, None]
    pos = (xmin[:, None] + taps[None, :]).astype(np.float64)
    w = np.where(used, filt((pos - centre[:, None] + 0.5) * invscale), 0.0)

    # torch sums the taps one after another; accumulate column by column to keep that order
    total = np.zeros(n_out, dtype=np.float64)
    for k in range(n_taps):
        total = total + w[:, k]
    nonzero = total != 0.0
    w = np.where(nonzero[:, None], w / np.where(nonzero, total, 1.0)[:, None], w)
    w_max = max(float(w.max()), 0.0)

    precision = 0
    while precision < 22:
        if int(0.5 + w_max * float(1 << (precision + 1))) >= (1 << 15):
            break
        precision += 1

    v = w * float(1 << precision)
    w_int = np.where(v < 0, np.trunc(v - 0.5), np.trunc(v + 0.5)).astype(np.int32)
    index = np.minimum(xmin[:, None] + taps[None, :], n_in - 1)

    # drop trailing tap columns that no output uses
    live = np.flatnonzero(w_int.any(axis=0))
    keep = int(live[-1]) + 1 if live.size else 1
    return index[:, :keep], w_int[:, :keep], precision


def _resample_axis(x: np.ndarray, axis: int, n_out: int, mode: str) -> np.ndarray:
    """One separable pass of the uint8 kernel along ``axis`` of the uint8 array ``x``."""
    index, weight, precision = axis_weights(x.shape[axis], n_out, mode)
    bshape = [1] * x.ndim
    bshape[axis] = n_out
    out_shape = list(x.shape)
    out_shape[axis] = n_out
    acc = np.full(out_shape, 1 << (precision - 1), dtype=np.int32)
    for k in range(index.shape[1]):
        tap = np.take(x, index[:, k], axis=axis).astype(np.int32)
        tap *= weight[:, k].reshape(bshape)
        acc += tap
    acc >>= precision
    np.clip(acc, 0, 255, out=acc)
    return acc.astype(np.uint8)


def resize_uint8(frames: np.ndarray, out_h: int, out_w: int, mode: str = "bicubic") -> np.ndarray:
    """Resize uint8 channels-last frames ``[H, W, C]`` or ``[N, H, W, C]`` to ``(out_h, out_w)``
    exactly like ``torch.nn.functional.interpolate(t, size=(out_h, out_w), mode=mode,
    antialias=True, align_corners=False)`` on the uint8 ``[N, C, H, W]`` tensor ``t`` (torch CPU,
    AVX2). ``mode`` is ``"bicubic"`` or ``"bilinear"``. Returns a new uint8 array of the same layout."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise TypeError(f"frames must be uint8, got {frames.dtype}")
    if frames.ndim not in (3, 4):
        raise ValueError(f"frames must be [H, W, C] or [N, H, W, C], got shape {frames.shape}")
    if mode not in _FILTERS:
        raise ValueError(f"mode must be one of {sorted(_FILTERS)}, got {mode!r}")
    out_h, out_w = int(out_h), int(out_w)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"output size must be positive, got {(out_h, out_w)}")
    batch = frames if frames.ndim == 4 else frames[None]
    in_h, in_w = batch.shape[1], batch.shape[2]
    if in_h < 1 or in_w < 1:
        raise ValueError(f"input frames must be non-empty, got shape {frames.shape}")

    out = batch
    if out_w != in_w:          # torch resamples the width (contiguous axis) first ...
        out = _resample_axis(out, 2, out_w, mode)
    if out_h != in_h:          # ... then the height, from the uint8 result of the first pass
        out = _resample_axis(out, 1, out_h, mode)
    if out is batch:
        out = batch.copy()
    return out if frames.ndim == 4 else out[0]
