"""Decoding a token plan into llama.cpp's KV cache, by the manifest's `image.attention` mode.

causal              text runs as tokens, image runs as embedding rows, all causal (LLaVA).
bidirectional-image the same, but each image run is one non-causal decode (Gemma 3: an image's
                    tokens see each other both ways, HF's block mask). Text stays causal.
prefix              the whole prompt is one non-causal decode (PaliGemma's prefix-LM): text tokens
                    enter as embedding rows read from the GGUF's own token_embd, because a
                    llama_batch cannot mix token ids and embeddings.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from mmedge.errors import PromptError

from .layouts import PreparedImage
from .llamacpp import LlamaModel
from .prompt import ImageRows, TokenPlan

Prefill = Callable[[LlamaModel, TokenPlan, np.ndarray, object, object], np.ndarray]


def image_pieces(run: ImageRows, prepared: list[PreparedImage] | None):
    """(start, count, grid) per image within a run of image rows: a run holding two adjacent
    images is split between them, since each image's grid starts at its own first position."""
    if not prepared or all(p.grid is None for p in prepared):
        yield run.start, run.count, None
        return
    first = 0
    for p in prepared:
        lo, hi = max(first, run.start), min(first + p.n_rows, run.start + run.count)
        if lo < hi:
            if p.grid is not None and (lo, hi) != (first, first + p.n_rows):
                raise PromptError("an image's tokens are split by other tokens, so its M-RoPE grid cannot be placed; "
                                  "the prompt text holds image tokens of its own")
            yield lo, hi - lo, p.grid
        first += p.n_rows



def _by_runs(bidirectional_images: bool) -> Prefill:
    def prefill(llm: LlamaModel, plan: TokenPlan, embeddings: np.ndarray, token_rows, prepared) -> np.ndarray:
        logits = None
        for k, item in enumerate(plan.items):
            last = k == len(plan.items) - 1
            if isinstance(item, ImageRows):
                for start, count, grid in image_pieces(item, prepared):
                    logits = llm.decode_embeddings(embeddings[start:start + count], grid=grid,
                                                   want_last_logits=last and start + count == item.start + item.count,
                                                   bidirectional=bidirectional_images)
            else:
                logits = llm.decode_tokens(item, logits_for="last" if last else "none")
        return logits

    return prefill


def _prefix(llm: LlamaModel, plan: TokenPlan, embeddings: np.ndarray, token_rows, prepared) -> np.ndarray:
    rows = [embeddings[item.start:item.start + item.count] if isinstance(item, ImageRows) else token_rows.rows(item)
            for item in plan.items]
    return llm.decode_embeddings(np.concatenate(rows), want_last_logits=True, bidirectional=True)


PREFILLS: dict[str, Prefill] = {
    "causal": _by_runs(False),
    "bidirectional-image": _by_runs(True),
    "prefix": _prefix,
}


def prefill(mode: str, llm: LlamaModel, plan: TokenPlan, embeddings: np.ndarray, divisor: float,
            token_rows=None, prepared: list[PreparedImage] | None = None) -> np.ndarray:
    """Decode the prompt; returns the last position's logits. `divisor` undoes the LLM graph's input
    scaling of image rows (manifest image.embedding_divisor); `prepared` gives each image's M-RoPE
    grid (the layout's), if any."""
    if not plan.items:
        raise PromptError("the prompt is empty after formatting; give some text or an image")
    if divisor != 1.0:
        embeddings = embeddings / np.float32(divisor)
    return PREFILLS[mode](llm, plan, embeddings, token_rows, prepared)
