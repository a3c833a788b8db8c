"""Keep llama.cpp's M-RoPE attention mask equal to the model's (causal in sequence order).

llama.cpp masks by position, not by order: a KV cell is hidden from a token when the cell's
temporal position is greater, or equal with a greater (row, column) — fine while positions grow
with the sequence, as for text and images. A video breaks that: its frame groups may share a
temporal position (Qwen2.5-VL's interval is below 1 when frames are sampled faster than
tokens_per_second * temporal_patch_size per second), so llama.cpp would hide an earlier group's
later rows from the next group, which the model lets it see.

`causal_runs` splits rows into runs whose mask llama.cpp gets right when decoded together, and
rows that must go one at a time with causal attention off (a lone row then sees every cell
before it — exactly the sequence-order mask).
"""
from __future__ import annotations

import numpy as np


def causal_runs(positions: np.ndarray, max_cell_pos: int) -> list[tuple[int, int, bool]]:
    """(start, end, causal) runs over the rows of `positions` ([1, n] or [3, n]: temporal, row,
    column); `max_cell_pos` is the largest temporal position already in the cache."""
    keys = np.broadcast_to(positions, (3, positions.shape[1])).T  # (t, y, x) per row
    runs, cached, i, n = [], max_cell_pos, 0, len(keys)
    while i < n:
        if keys[i, 0] <= cached:  # an earlier cell could be hidden from it
            runs.append((i, i + 1, False))
            cached, i = max(cached, int(keys[i, 0])), i + 1
            continue
        j = i + 1
        while j < n and keys[j, 0] > cached and tuple(keys[j - 1]) < tuple(keys[j]):
            j += 1
        runs.append((i, j, True))
        cached, i = max(cached, int(keys[i:j, 0].max())), j
    return runs
