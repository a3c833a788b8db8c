"""`causal_runs`: which rows llama.cpp may decode together with its position-based causal mask and
still give the sequence-order mask (the model's), checked against a brute-force comparison of the
two masks."""
from __future__ import annotations

import numpy as np
import pytest

from mmedge.runtime.mrope_mask import causal_runs


def llama_cpp_sees(cell, row) -> bool:
    """llama-kv-cache.cpp's causal M-RoPE mask: a cell is hidden when its temporal position is
    greater, or equal with a greater (row, column)."""
    (t0, y0, x0), (t1, y1, x1) = cell, row
    return not (t0 > t1 or (t0 == t1 and (y0 > y1 or (y0 == y1 and x0 > x1))))


def check_sequence_order(positions: np.ndarray, max_cell_pos: int) -> None:
    """Decoding as `causal_runs` says, every row sees exactly the rows before it and itself."""
    keys = [tuple(int(v) for v in k) for k in np.broadcast_to(positions, (3, positions.shape[1])).T]
    runs = causal_runs(positions, max_cell_pos)
    assert [lo for lo, _, _ in runs] == sorted({lo for lo, _, _ in runs}) and runs[-1][1] == len(keys)
    for lo, hi, causal in runs:
        if not causal:
            assert hi == lo + 1  # a lone row with causal attention off sees every cell before it
            continue
        for i in range(lo, hi):
            # the cache (rows before the run) and the run's rows up to i: seen; the run's later rows: hidden
            assert all(llama_cpp_sees(keys[j], keys[i]) for j in range(i + 1))
            assert not any(llama_cpp_sees(keys[j], keys[i]) for j in range(i + 1, hi))


def video_positions(start: int, groups: int, interval: float, h: int, w: int) -> np.ndarray:
    t = (np.arange(groups, dtype=np.float32) * np.float32(interval)).astype(np.int64)
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    grid = np.stack([np.repeat(t, h * w), np.tile(rows.ravel(), groups), np.tile(cols.ravel(), groups)])
    return start + grid


def test_text_and_images_go_in_one_run():
    assert causal_runs(np.arange(10, 20)[None], 9) == [(0, 10, True)]
    assert causal_runs(video_positions(5, 1, 1.0, 3, 4), 4) == [(0, 12, True)]


@pytest.mark.parametrize("interval", [1.0, 2.333, 0.5, 0.1667, 0.0])
def test_video_groups_decode_in_sequence_order(interval):
    positions = video_positions(7, 4, interval, 2, 3)
    check_sequence_order(positions, 6)
    runs = causal_runs(positions, 6)
    t = positions[0, ::6]  # each group's temporal position
    repeated = sum(int(t[g] == t[g - 1]) for g in range(1, 4))
    # A group on a new temporal position joins a causal run; one sharing its predecessor's goes row by row.
    assert sum(hi - lo for lo, hi, causal in runs if not causal) == 6 * repeated
    if interval >= 1:
        assert runs == [(0, 24, True)]


def test_text_at_or_below_the_cached_positions_goes_row_by_row():
    runs = causal_runs(np.arange(5, 9)[None], 6)
    assert runs == [(0, 1, False), (1, 2, False), (2, 4, True)]
