"""Greedy generations compared as numbers allow: equal, or apart from a near tie on.

Two correct implementations of one model differ in the last bits of their logits (another
summation order, another CPU's kernels). Where the reference's best two logits are closer than
that difference can reach, either may win, and from there on the two generations are different
texts. So a generation *matches* when it is the reference's token for token, or when the first
token that differs is one the reference picked by less than the tie width, a width fixed before
looking at the bundle (twice the tolerance its exact mode promises, times the logits' scale at that
step) ahead of the token the bundle took: a wrong conversion moves logits by far more and fails,
a near tie on another CPU does not.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class GreedyMatch:
    equal: int  # tokens equal from the start
    total: int  # tokens compared
    first_difference: dict | None  # {step, reference_gap, tie_width, near_tie}, or None: all equal

    @property
    def matches(self) -> bool:
        return self.first_difference is None or self.first_difference["near_tie"]

    def to_dict(self) -> dict:
        return {**asdict(self), "matches": self.matches}


def compare_greedy(reference: list[int], reference_scores, candidate: list[int],
                   tolerance: float | None) -> GreedyMatch:
    """`reference_scores[i]`: the reference's logits at step i (banned tokens may be -inf);
    `tolerance`: the candidate's exact-mode logit tolerance, relative to the largest |logit|
    (None: no tie is allowed, any difference is one)."""
    equal = 0
    for a, b in zip(reference, candidate):
        if a != b:
            break
        equal += 1
    total = len(reference)
    if equal == total and len(candidate) >= total:
        return GreedyMatch(equal, total, None)
    if equal >= len(candidate) or equal >= len(reference_scores):  # the candidate stopped early, or no scores there
        return GreedyMatch(equal, total, {"step": equal, "reference_gap": None, "tie_width": None, "near_tie": False})
    scores = np.asarray(reference_scores[equal], np.float64).ravel()
    # How much the reference preferred its token over the one the candidate took (inf if banned there).
    gap = float(scores[reference[equal]] - scores[candidate[equal]])
    finite = scores[np.isfinite(scores)]
    width = 2.0 * tolerance * float(np.abs(finite).max()) if tolerance is not None and finite.size else 0.0
    return GreedyMatch(equal, total, {"step": equal, "reference_gap": gap, "tie_width": width,
                                      "near_tie": bool(tolerance is not None and np.isfinite(gap) and gap <= width)})
