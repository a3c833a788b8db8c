"""Sampler: greedy, banned ids, seeds, top-k / top-p, and the sampled distribution itself."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mmedge.errors import RuntimeInputError, SamplingError
from mmedge.runtime.sampling import Sampler, SamplingParams

LOGITS = np.array([1.0, 2.5, -0.5, 2.0, 0.3, 1.7, -2.0, 0.9])  # argmax is id 1


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _draw(params: SamplingParams, logits: np.ndarray, n: int, banned=None) -> np.ndarray:
    s = Sampler(params)
    return np.array([s(logits, banned) for _ in range(n)])


# --- greedy ---------------------------------------------------------------------------------------
def test_greedy_is_argmax():
    s = Sampler(SamplingParams())
    assert s(LOGITS) == 1
    rng = np.random.default_rng(7)
    for _ in range(50):
        row = rng.normal(size=1000).astype(np.float32)
        assert s(row) == int(np.argmax(row))


def test_greedy_ties_go_to_the_lowest_id():
    s = Sampler(SamplingParams(temperature=0.0))
    assert s(np.array([1.0, 3.0, 3.0, 2.0])) == 1
    assert s(np.array([5.0, 5.0, 5.0])) == 0
    assert s(np.array([-np.inf, 0.0, 0.0])) == 1


def test_greedy_returns_a_python_int():
    token = Sampler(SamplingParams())(LOGITS.astype(np.float32))
    assert type(token) is int and token == 1


def test_top_k_one_is_greedy_even_with_temperature():
    rng = np.random.default_rng(3)
    for seed in range(5):
        s = Sampler(SamplingParams(temperature=1.5, top_k=1, seed=seed))
        for _ in range(40):
            row = rng.normal(size=50)
            assert s(row) == int(np.argmax(row))
    # ties: the lowest id, like greedy
    assert Sampler(SamplingParams(temperature=1.0, top_k=1))(np.array([0.0, 4.0, 4.0])) == 1


def test_tiny_top_p_is_greedy():
    rng = np.random.default_rng(4)
    s = Sampler(SamplingParams(temperature=1.0, top_p=1e-9, seed=11))
    for _ in range(200):
        row = rng.normal(size=30)
        assert s(row) == int(np.argmax(row))
    assert s(np.array([0.0, 4.0, 4.0, 1.0])) == 1  # ties: lowest id


# --- banned ids -------------------------------------------------------------------------------------
def test_banned_argmax_greedy_takes_the_next_best():
    s = Sampler(SamplingParams())
    assert s(LOGITS, np.array([1])) == 3  # 2.5 banned -> 2.0
    assert s(LOGITS, np.array([1, 3])) == 5  # -> 1.7
    assert s(LOGITS, np.array([], dtype=np.int64)) == 1  # empty: no effect


def test_banned_ids_are_never_sampled():
    banned = np.array([1, 3, 5])  # the three most likely tokens
    draws = _draw(SamplingParams(temperature=2.0, seed=5), LOGITS, 5000, banned)
    assert not np.isin(draws, banned).any()
    # every other id does come up (the ban removes exactly the banned ones)
    assert sorted(set(draws.tolist())) == [0, 2, 4, 6, 7]


def test_banned_ids_are_skipped_by_top_k():
    draws = _draw(SamplingParams(temperature=1.0, top_k=2, seed=1), LOGITS, 2000, np.array([1]))
    # top-2 after the ban: ids 3 (2.0) and 5 (1.7)
    assert set(draws.tolist()) == {3, 5}
    p3 = _softmax(np.array([2.0, 1.7]))[0]
    assert abs((draws == 3).mean() - p3) < 0.03


def test_banning_does_not_modify_the_callers_logits():
    logits = LOGITS.copy()
    Sampler(SamplingParams(temperature=1.0))(logits, np.array([1, 2]))
    np.testing.assert_array_equal(logits, LOGITS)


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_everything_banned_is_a_sampling_error(temperature):
    with pytest.raises(SamplingError, match="every one of the 3 tokens is banned"):
        Sampler(SamplingParams(temperature=temperature))(np.array([1.0, 2.0, 3.0]), np.array([0, 1, 2]))


def test_minus_inf_logits_are_never_sampled():
    logits = np.array([0.0, -np.inf, 0.5, -np.inf])
    draws = _draw(SamplingParams(temperature=1.0, seed=2), logits, 2000)
    assert set(draws.tolist()) == {0, 2}


# --- seeds --------------------------------------------------------------------------------------------
def test_same_seed_same_sequence():
    params = SamplingParams(temperature=1.0, top_k=6, top_p=0.95, seed=1234)
    a = _draw(params, LOGITS, 500)
    b = _draw(params, LOGITS, 500)
    np.testing.assert_array_equal(a, b)
    assert len(set(a.tolist())) >= 5  # it really sampled, not a constant sequence


def test_different_seeds_differ():
    flat = np.zeros(100)  # uniform: two independent sequences agree on ~1% of positions
    a = _draw(SamplingParams(temperature=1.0, seed=1), flat, 1000)
    b = _draw(SamplingParams(temperature=1.0, seed=2), flat, 1000)
    agree = int((a == b).sum())
    assert agree < 40, agree  # expected 10, independent draws


def test_seed_is_per_sampler_not_global():
    params = SamplingParams(temperature=1.0, seed=9)
    first = _draw(params, LOGITS, 100)
    np.random.seed(0)  # the global numpy RNG must not matter
    np.random.random(10)
    np.testing.assert_array_equal(_draw(params, LOGITS, 100), first)


def test_largest_seed_is_accepted():
    s = Sampler(SamplingParams(temperature=1.0, seed=2**63 - 1))
    assert 0 <= s(LOGITS) < len(LOGITS)


# --- the distribution ---------------------------------------------------------------------------------
N_DRAWS = 20_000


def _chi_square(draws: np.ndarray, probs: np.ndarray) -> float:
    counts = np.bincount(draws, minlength=len(probs))
    expected = probs * len(draws)
    keep = expected > 0
    assert counts[~keep].sum() == 0
    return float(((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum())


@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.7])
def test_temperature_frequencies_match_softmax(temperature):
    draws = _draw(SamplingParams(temperature=temperature, seed=42), LOGITS, N_DRAWS)
    probs = _softmax(LOGITS / temperature)
    freqs = np.bincount(draws, minlength=len(LOGITS)) / N_DRAWS
    # One standard error is at most sqrt(0.25 / 20000) = 0.0035; 0.02 is more than 5 of them.
    assert float(np.abs(freqs - probs).max()) < 0.02
    # Chi-square with 7 degrees of freedom: 24.3 is the 0.1% critical value.
    assert _chi_square(draws, probs) < 24.3


def test_temperature_sharpens_and_flattens():
    cold = _draw(SamplingParams(temperature=0.1, seed=0), LOGITS, 2000)
    hot = _draw(SamplingParams(temperature=100.0, seed=0), LOGITS, 8000)
    # T=0.1: p(id 1) = 1 / (1 + e^-5 + ...) ~ 0.993
    assert (cold == 1).mean() > 0.98
    # T=100: nearly uniform, every id close to 1/8
    freqs = np.bincount(hot, minlength=8) / len(hot)
    assert float(np.abs(freqs - 1 / 8).max()) < 0.02


def test_top_k_frequencies():
    draws = _draw(SamplingParams(temperature=1.0, top_k=3, seed=8), LOGITS, N_DRAWS)
    kept = np.array([1, 3, 5])  # logits 2.5, 2.0, 1.7
    assert set(draws.tolist()) == set(kept.tolist())
    probs = np.zeros(len(LOGITS))
    probs[kept] = _softmax(LOGITS[kept])
    freqs = np.bincount(draws, minlength=len(LOGITS)) / N_DRAWS
    assert float(np.abs(freqs - probs).max()) < 0.02
    assert _chi_square(draws, probs) < 13.8  # df=2, 0.1% critical value


def test_top_p_keeps_the_smallest_prefix_reaching_p():
    probs = np.array([0.1, 0.5, 0.05, 0.3, 0.05])
    logits = np.log(probs)
    # sorted: 0.5 (id 1), 0.3 (id 3), 0.1 (id 0), ... cumulative 0.5, 0.8, 0.9
    # top_p=0.7 keeps ids 1, 3 (0.5 < 0.7 <= 0.8), renormalized to 0.625 / 0.375
    draws = _draw(SamplingParams(temperature=1.0, top_p=0.7, seed=3), logits, N_DRAWS // 2)
    assert set(draws.tolist()) == {1, 3}
    assert abs((draws == 1).mean() - 0.625) < 0.02
    # top_p=0.85 adds id 0
    draws = _draw(SamplingParams(temperature=1.0, top_p=0.85, seed=3), logits, N_DRAWS // 2)
    assert set(draws.tolist()) == {0, 1, 3}
    freqs = np.bincount(draws, minlength=5) / len(draws)
    np.testing.assert_allclose(freqs[[1, 3, 0]], np.array([0.5, 0.3, 0.1]) / 0.9, atol=0.02)
    # top_p=0.45 is reached by the first token alone
    assert set(_draw(SamplingParams(temperature=1.0, top_p=0.45, seed=3), logits, 500).tolist()) == {1}


def test_top_k_then_top_p():
    probs = np.array([0.4, 0.25, 0.2, 0.15])
    # top_k=3 renormalizes to 0.47, 0.29, 0.24; top_p=0.7 then keeps ids 0 and 1 (0.47 < 0.7 <= 0.76)
    draws = _draw(SamplingParams(temperature=1.0, top_k=3, top_p=0.7, seed=6), np.log(probs), 5000)
    assert set(draws.tolist()) == {0, 1}
    assert abs((draws == 0).mean() - 0.4 / 0.65) < 0.03


# --- invalid parameters -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": -0.1}, r"temperature must be in \[0, 100\] \(0 = greedy\), got -0.1"),
        ({"temperature": math.nan}, r"temperature must be in \[0, 100\].*got nan"),
        ({"temperature": math.inf}, r"temperature must be in \[0, 100\].*got inf"),
        ({"temperature": 100.5}, r"temperature must be in \[0, 100\]"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\] \(1 = off\), got 0.0"),
        ({"top_p": 1.0001}, r"top_p must be in \(0, 1\].*got 1.0001"),
        ({"top_p": -0.5}, r"top_p must be in \(0, 1\]"),
        ({"top_p": math.nan}, r"top_p must be in \(0, 1\].*got nan"),
        ({"top_k": -1}, r"top_k must be >= 0 \(0 = off\), got -1"),
        ({"seed": -1}, r"seed must be in \[0, 2\^63\), got -1"),
        ({"seed": 2**63}, r"seed must be in \[0, 2\^63\), got 9223372036854775808"),
        ({"top_k": 2.5}, r"top_k must be an integer, got 2.5"),
        ({"seed": 1.5}, r"seed must be an integer, got 1.5"),
        ({"top_k": True}, r"top_k must be an integer, got True"),
        ({"temperature": "0.7"}, r"temperature must be a number, got '0.7'"),
        ({"top_p": None}, r"top_p must be a number, got None"),
    ],
)
def test_invalid_params(kwargs, message):
    with pytest.raises(SamplingError, match=message):
        SamplingParams(**kwargs)


def test_sampling_error_is_a_runtime_input_error():
    with pytest.raises(RuntimeInputError):
        SamplingParams(top_k=-3)


def test_boundary_params_are_valid():
    assert SamplingParams(temperature=100.0, top_p=1.0, top_k=0, seed=0).temperature == 100.0
    assert SamplingParams(top_p=1e-12).top_p == 1e-12
    p = SamplingParams(temperature=np.float32(0.5), top_k=np.int64(3), seed=np.int64(5))
    assert Sampler(p)(LOGITS) in (1, 3, 5)


def test_nan_logits_are_refused():
    from mmedge.runtime.sampling import Sampler, SamplingParams

    logits = np.zeros(10)
    logits[3] = np.nan
    for params in (SamplingParams(), SamplingParams(temperature=0.8, seed=1)):
        with pytest.raises(SamplingError, match="NaN logits"):
            Sampler(params)(logits)
