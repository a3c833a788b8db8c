"""`should_stop` is asked before every llama_decode call and, inside a batch of more than one row,
by llama.cpp between graph nodes (its abort callback): a prefill stops between batches or inside
one (no tokens, `stats.stopped`), an image run that must be one batch (Gemma 3's bidirectional
runs) stops inside it, a decode stops between steps, and the next generation on the same Pipeline
is unaffected."""
from __future__ import annotations

import pytest

from mmedge.export.verify_inputs import synthetic_photo
from mmedge.runtime import llamacpp
from mmedge.runtime.pipeline import GenerationParams, Pipeline, RuntimeOptions

BATCH = 16
LONG_PROMPT = "Describe every detail of this picture, " * 12  # well over one 16-position batch
PARAMS = GenerationParams(max_new_tokens=6, min_new_tokens=6)


@pytest.fixture(scope="module")
def small_batches(fp32_bundle):
    pipe = Pipeline(fp32_bundle, RuntimeOptions(exact=True, n_ctx=1024, n_batch=BATCH))
    yield pipe
    pipe.close()


@pytest.fixture(scope="module")
def long_reference(pipeline, photos):
    return pipeline.generate([photos["coffee"]], LONG_PROMPT, PARAMS).tokens


def _counter(stop_at: int):
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) >= stop_at

    return should_stop, calls


def test_a_long_prefill_stops_between_batches(small_batches, photos, long_reference):
    llm = small_batches.llm
    stopped = small_batches.generate([photos["coffee"]], LONG_PROMPT, PARAMS,
                                     should_stop=lambda: llm.n_past >= 2 * BATCH)  # true once two batches are in
    assert stopped.stats.stopped and stopped.tokens == []
    assert 2 * BATCH <= llm.n_past < stopped.stats.prompt_positions  # the rest never went in
    again = small_batches.generate([photos["coffee"]], LONG_PROMPT, PARAMS)
    assert not again.stats.stopped and again.tokens == long_reference


def test_a_prefill_batch_stops_inside_itself(pipeline, photos, long_reference):
    """Ask 1 comes before the first llama_decode; ask 2 is llama.cpp's, after the first graph node
    of that batch: the stop lands inside the batch, which therefore never counts as decoded."""
    should_stop, calls = _counter(2)
    stopped = pipeline.generate([photos["coffee"]], LONG_PROMPT, PARAMS, should_stop=should_stop)
    assert stopped.stats.stopped and stopped.tokens == [] and len(calls) == 2
    assert pipeline.llm.n_past == 0
    again = pipeline.generate([photos["coffee"]], LONG_PROMPT, PARAMS)  # the aborted rows are cleared
    assert not again.stats.stopped and again.tokens == long_reference


def test_a_decode_stops_between_steps(small_batches, photos):
    params = GenerationParams(max_new_tokens=20, min_new_tokens=20)
    asked = []
    full = small_batches.generate([photos["rocket"]], "What is this?", params,
                                  should_stop=lambda: bool(asked.append(1)))  # never stops, counts the asks
    # The pipeline asks once per decode step (19; single-token decodes are not watched inside);
    # the rest are asks before and inside the prefill's batches.
    prefill_asks = len(asked) - (params.max_new_tokens - 1)
    assert prefill_asks > 2
    assert not full.stats.stopped and len(full.tokens) == 20
    should_stop, calls = _counter(prefill_asks + 5)
    stopped = small_batches.generate([photos["rocket"]], "What is this?", params, should_stop=should_stop)
    assert stopped.stats.stopped and 0 < len(stopped.tokens) < 20
    assert stopped.tokens == full.tokens[: len(stopped.tokens)]


def test_a_bidirectional_image_run_stops_inside_its_one_batch(bundles, monkeypatch):
    """Gemma 3 decodes each image's soft tokens as one non-causal batch (it cannot be split). The
    stop is asked for at the second ask while causal attention is off: the first is `_decode`'s own
    before llama_decode, so the second can only be llama.cpp's, inside that batch."""
    pipe = Pipeline(bundles("gemma3-siglip")[0], RuntimeOptions(exact=True, n_ctx=1024))
    try:
        image, prompt = synthetic_photo(131, 77, seed=100), "Describe this image."
        reference = pipe.generate([image], prompt, PARAMS).tokens
        state = {"bidirectional": False, "asks_inside": 0}
        set_causal = llamacpp._ll.llama_set_causal_attn

        def spy(ctx, causal):
            state["bidirectional"] = not causal
            return set_causal(ctx, causal)

        def should_stop() -> bool:
            if state["bidirectional"]:
                state["asks_inside"] += 1
            return state["asks_inside"] >= 2

        monkeypatch.setattr(llamacpp._ll, "llama_set_causal_attn", spy)
        stopped = pipe.generate([image], prompt, PARAMS, should_stop=should_stop)
        assert stopped.stats.stopped and stopped.tokens == [] and state["asks_inside"] == 2
        assert not state["bidirectional"]  # causal attention was switched back on after the abort
        monkeypatch.undo()
        assert pipe.generate([image], prompt, PARAMS).tokens == reference
    finally:
        pipe.close()
