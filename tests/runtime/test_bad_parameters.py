"""Generation, runtime and sampling parameters: out-of-range values are refused with a named error
saying the range; the boundaries are accepted."""
from __future__ import annotations

import pytest

from mmedge.errors import SamplingError
from mmedge.runtime.pipeline import GenerationParams, RuntimeOptions
from mmedge.runtime.sampling import SamplingParams


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        (dict(max_new_tokens=0), "max_new_tokens must be in 1 .. 2^20, got 0"),
        (dict(max_new_tokens=-5), "max_new_tokens must be in 1 .. 2^20, got -5"),
        (dict(max_new_tokens=(1 << 20) + 1), f"got {(1 << 20) + 1}"),
        (dict(max_new_tokens=4, min_new_tokens=5), "min_new_tokens must be in 0 .. max_new_tokens, got 5"),
        (dict(max_new_tokens=4, min_new_tokens=-1), "min_new_tokens must be in 0 .. max_new_tokens, got -1"),
    ],
)
def test_invalid_generation_params(kwargs, fragment):
    with pytest.raises(SamplingError) as info:
        GenerationParams(**kwargs)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        (dict(n_ctx=0), "n_ctx must be in 16 .. 2^20, got 0"),
        (dict(n_ctx=8), "n_ctx must be in 16 .. 2^20, got 8"),
        (dict(n_ctx=-1), "got -1"),
        (dict(n_batch=0), "n_batch must be in 1 .. 65536, got 0"),
        (dict(n_batch=-3), "n_batch must be in 1 .. 65536, got -3"),
        (dict(threads=-1), "threads must be in 0 .. 1024 (0 = every core this process may use), got -1"),
    ],
)
def test_invalid_runtime_options(kwargs, fragment):
    with pytest.raises(SamplingError) as info:
        RuntimeOptions(**kwargs)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        (dict(temperature=-0.5), "temperature must be in [0, 100]"),
        (dict(temperature=float("nan")), "temperature must be in [0, 100]"),
        (dict(top_k=-1), "top_k must be >= 0"),
        (dict(top_p=0.0), "top_p must be in (0, 1]"),
        (dict(top_p=1.5), "top_p must be in (0, 1]"),
        (dict(seed=-1), "seed must be in [0, 2^63)"),
    ],
)
def test_invalid_sampling_params(kwargs, fragment):
    with pytest.raises(SamplingError) as info:
        SamplingParams(**kwargs)
    assert fragment in str(info.value)


def test_boundary_parameters_are_accepted():
    assert GenerationParams(max_new_tokens=1, min_new_tokens=1).max_new_tokens == 1
    assert RuntimeOptions(n_ctx=16, n_batch=1, threads=0).n_batch == 1
