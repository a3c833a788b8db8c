"""The image-embedding cache: keyed by content, least recently used out first, copies in and out;
in the pipeline a repeated image skips the encoder and projector and changes no token."""
from __future__ import annotations

import numpy as np
import pytest

from mmedge.errors import SamplingError
from mmedge.runtime.embedding_cache import EmbeddingCache
from mmedge.runtime.pipeline import GenerationParams, Pipeline, RuntimeOptions


def _arr(seed: int, shape=(2, 3)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_key_depends_on_names_dtypes_shapes_and_bytes():
    a = _arr(0)
    base = EmbeddingCache.key({"x": a})
    assert EmbeddingCache.key({"x": a.copy()}) == base
    assert EmbeddingCache.key({"y": a}) != base
    assert EmbeddingCache.key({"x": a.astype(np.float64)}) != base
    assert EmbeddingCache.key({"x": a.reshape(3, 2)}) != base
    b = a.copy()
    b[1, 2] = np.nextafter(b[1, 2], np.float32(np.inf))  # one ulp in one value
    assert EmbeddingCache.key({"x": b}) != base
    assert EmbeddingCache.key({"x": a, "ids": np.arange(3)}) != base
    # A non-contiguous view hashes as its values.
    wide = np.zeros((2, 6), np.float32)
    wide[:, ::2] = a
    assert EmbeddingCache.key({"x": wide[:, ::2]}) == base


def test_least_recently_used_goes_first_and_copies_are_handed_out():
    entry = _arr(1, (4, 8))  # 128 bytes
    cache = EmbeddingCache(max_bytes=3 * entry.nbytes)
    for k in "abc":
        cache.put(k, entry + ord(k))
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("d", entry)
    assert cache.get("b") is None and len(cache) == 3 and cache.nbytes == 3 * entry.nbytes
    assert cache.counters.evictions == 1 and cache.counters.hits == 1 and cache.counters.misses == 1
    got = cache.get("c")
    got[:] = 0  # a caller's change does not reach the cache
    assert np.array_equal(cache.get("c"), entry + ord("c"))
    cache.put("huge", np.zeros(3 * entry.size + 1, np.float32))  # larger than the whole budget: not kept
    assert cache.get("huge") is None and len(cache) == 3


def test_a_cache_needs_a_size():
    with pytest.raises(ValueError, match="positive size"):
        EmbeddingCache(0)
    with pytest.raises(SamplingError, match="embedding_cache_mib must be in 0"):
        RuntimeOptions(embedding_cache_mib=-1)


@pytest.fixture(scope="module")
def cached_pipeline(fp32_bundle):
    pipe = Pipeline(fp32_bundle, RuntimeOptions(exact=True, n_ctx=1024, embedding_cache_mib=64))
    yield pipe
    pipe.close()


def test_a_repeated_image_skips_the_encoder_and_gives_the_same_tokens(pipeline, cached_pipeline, photos, monkeypatch):
    params = GenerationParams(max_new_tokens=8, min_new_tokens=8)
    cat, coffee = photos["chelsea"], photos["coffee"]
    reference = pipeline.generate([cat, coffee, cat], "<image><image><image> Compare.", params)
    # Encoder calls are counted, not timed: a hit must not run the encoder at all.
    runs = []
    real_run = cached_pipeline.encoder.run
    monkeypatch.setattr(cached_pipeline.encoder, "run", lambda inputs: runs.append(1) or real_run(inputs))
    # The same picture twice in one prompt: its second occurrence is already a hit.
    first = cached_pipeline.generate([cat, coffee, cat], "<image><image><image> Compare.", params)
    assert first.stats.embedding_cache_hits == 1 and len(runs) == 2
    assert first.tokens == reference.tokens
    again = cached_pipeline.generate([cat, coffee, cat], "<image><image><image> Compare.", params)
    assert again.stats.embedding_cache_hits == 3 and again.stats.project_s == 0.0 and len(runs) == 2
    assert again.tokens == reference.tokens
    # Another picture is a miss; its tokens are those of the uncached pipeline.
    other = cached_pipeline.generate([photos["rocket"]], "<image> What is this?", params)
    assert other.stats.embedding_cache_hits == 0
    assert other.tokens == pipeline.generate([photos["rocket"]], "<image> What is this?", params).tokens


def test_the_cache_is_off_by_default(pipeline, photos):
    params = GenerationParams(max_new_tokens=2, min_new_tokens=2)
    for _ in range(2):
        assert pipeline.generate([photos["camera"]], "<image> Hi", params).stats.embedding_cache_hits == 0
    assert pipeline.embedding_cache is None
