"""`should_stop` is asked before every llama_decode call: a prefill longer than one batch stops
between batches (no tokens, `stats.stopped`), a decode stops between steps, and the next
generation on the same Pipeline is unaffected."""
from __future__ import annotations

import pytest

from mmedge.runtime.pipeline import GenerationParams, Pipeline, RuntimeOptions

BATCH = 16


@pytest.fixture(scope="module")
def small_batches(fp32_bundle):
    pipe = Pipeline(fp32_bundle, RuntimeOptions(exact=True, n_ctx=1024, n_batch=BATCH))
    yield pipe
    pipe.close()


def _counter(stop_at: int):
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) >= stop_at

    return should_stop, calls


def test_a_long_prefill_stops_between_batches(small_batches, pipeline, photos):
    prompt = "Describe every detail of this picture, " * 12  # well over one 16-position batch
    params = GenerationParams(max_new_tokens=6, min_new_tokens=6)
    reference = pipeline.generate([photos["coffee"]], prompt, params).tokens
    should_stop, calls = _counter(3)
    stopped = small_batches.generate([photos["coffee"]], prompt, params, should_stop=should_stop)
    assert stopped.stats.stopped and stopped.tokens == [] and len(calls) == 3
    assert 0 < small_batches.llm.n_past < stopped.stats.prompt_positions  # two batches went in, not all
    again = small_batches.generate([photos["coffee"]], prompt, params)
    assert not again.stats.stopped and again.tokens == reference


def test_a_decode_stops_between_steps(small_batches, photos):
    params = GenerationParams(max_new_tokens=20, min_new_tokens=20)
    asked = []
    full = small_batches.generate([photos["rocket"]], "What is this?", params,
                                  should_stop=lambda: bool(asked.append(1)))  # never stops, counts the asks
    # The pipeline asks once per decode step (19); the rest are asks before each prefill llama_decode.
    prefill_asks = len(asked) - (params.max_new_tokens - 1)
    assert prefill_asks >= 2 and not full.stats.stopped and len(full.tokens) == 20
    should_stop, calls = _counter(prefill_asks + 5)
    stopped = small_batches.generate([photos["rocket"]], "What is this?", params, should_stop=should_stop)
    assert stopped.stats.stopped and 0 < len(stopped.tokens) < 20
    assert stopped.tokens == full.tokens[: len(stopped.tokens)]
