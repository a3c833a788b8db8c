"""export/greedy_match.py: equal, or apart from a near tie on, with the tie width fixed in advance."""
from __future__ import annotations

import numpy as np

from mmedge.export.greedy_match import compare_greedy


def _scores(rows: list[dict[int, float]], vocab: int = 6) -> list[np.ndarray]:
    out = []
    for row in rows:
        s = np.full(vocab, -1.0)
        for token, value in row.items():
            s[token] = value
        out.append(s)
    return out


def test_equal_runs_match():
    m = compare_greedy([1, 2, 3], _scores([{1: 5}, {2: 5}, {3: 5}]), [1, 2, 3], tolerance=2e-5)
    assert m.matches and (m.equal, m.total, m.first_difference) == (3, 3, None)


def test_a_difference_at_a_near_tie_matches_and_is_recorded():
    # Step 1: the reference took 2 over 4 by 1e-4; width = 2 * 2e-5 * 5 = 2e-4.
    scores = _scores([{1: 5.0}, {2: 5.0, 4: 5.0 - 1e-4}, {3: 5.0}])
    m = compare_greedy([1, 2, 3], scores, [1, 4, 0], tolerance=2e-5)
    assert m.matches and m.equal == 1
    assert m.first_difference["step"] == 1 and m.first_difference["near_tie"] is True
    assert abs(m.first_difference["reference_gap"] - 1e-4) < 1e-9 and abs(m.first_difference["tie_width"] - 2e-4) < 1e-12
    assert m.to_dict()["matches"] is True


def test_a_difference_beyond_the_width_does_not_match():
    scores = _scores([{1: 5.0}, {2: 5.0, 4: 5.0 - 1e-2}])
    m = compare_greedy([1, 2], scores, [1, 4], tolerance=2e-5)
    assert not m.matches and m.first_difference["near_tie"] is False


def test_the_width_is_measured_against_the_token_taken_not_the_runner_up():
    """The candidate took the reference's third choice: the gap to that token decides."""
    scores = _scores([{2: 5.0, 4: 5.0 - 1e-5, 5: 5.0 - 1.0}])
    assert compare_greedy([2], scores, [4], tolerance=2e-5).matches
    assert not compare_greedy([2], scores, [5], tolerance=2e-5).matches


def test_no_tolerance_means_no_tie_and_banned_tokens_never_tie():
    scores = _scores([{2: 5.0, 4: 5.0}])
    assert not compare_greedy([2], scores, [4], tolerance=None).matches
    banned = _scores([{2: 5.0}])
    banned[0][3] = -np.inf
    assert not compare_greedy([2], banned, [3], tolerance=1.0).matches


def test_a_shorter_candidate_does_not_match():
    m = compare_greedy([1, 2, 3], _scores([{1: 5}, {2: 5}, {3: 5}]), [1, 2], tolerance=2e-5)
    assert not m.matches and m.equal == 2 and m.first_difference["reference_gap"] is None
