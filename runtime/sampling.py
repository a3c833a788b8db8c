"""Token sampling in numpy: greedy, temperature, top-k, top-p, seeded.

Done here rather than with llama.cpp's sampler chain so that the Python and the native
runtime can implement one documented algorithm and give the same tokens for the same seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmedge.errors import SamplingError


@dataclass(frozen=True)
class SamplingParams:
    """temperature 0 means greedy (argmax; ties go to the lowest id, as torch.argmax)."""

    temperature: float = 0.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1.0: off
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("temperature", "top_p"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise SamplingError(f"{name} must be a number, got {value!r}")
        for name in ("top_k", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise SamplingError(f"{name} must be an integer, got {value!r}")
        if not (0.0 <= self.temperature <= 100.0) or self.temperature != self.temperature:
            raise SamplingError(f"temperature must be in [0, 100] (0 = greedy), got {self.temperature}")
        if self.top_k < 0:
            raise SamplingError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not (0.0 < self.top_p <= 1.0):
            raise SamplingError(f"top_p must be in (0, 1] (1 = off), got {self.top_p}")
        if not (0 <= self.seed < 2**63):
            raise SamplingError(f"seed must be in [0, 2^63), got {self.seed}")


class Sampler:
    def __init__(self, params: SamplingParams):
        self.params = params
        self._rng = np.random.default_rng(params.seed)

    def __call__(self, logits: np.ndarray, banned: np.ndarray | None = None) -> int:
        """Pick the next token from one row of logits. `banned` ids get probability 0."""
        logits = np.asarray(logits, dtype=np.float64)
        if np.isnan(logits).any():
            raise SamplingError("the model returned NaN logits; the LLM part is broken (re-export it, or try F32/F16)")
        if banned is not None and banned.size:
            logits = logits.copy()
            logits[banned] = -np.inf
            if np.all(logits == -np.inf):
                raise SamplingError(
                    f"every one of the {logits.size} tokens is banned (or has logit -inf); nothing can be sampled, "
                    "lower min_new_tokens or check the banned ids"
                )
        p = self.params
        if p.temperature == 0.0:
            return int(np.argmax(logits))
        scaled = logits / p.temperature
        order = np.argsort(-scaled, kind="stable")
        if p.top_k > 0:
            order = order[: p.top_k]
        kept = scaled[order]
        probs = np.exp(kept - kept[0])
        probs /= probs.sum()
        if p.top_p < 1.0:
            # Keep the smallest prefix whose mass reaches top_p (at least one token).
            cutoff = int(np.searchsorted(np.cumsum(probs), p.top_p) + 1)
            order, probs = order[:cutoff], probs[:cutoff] / probs[:cutoff].sum()
        return int(order[self._rng.choice(len(order), p=probs)])
