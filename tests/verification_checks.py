"""What a full-precision bundle's verification report must show, on every CPU.

Token for token against transformers' generate, except from a near tie on (the reference's margin
for the token the bundle took is within twice the exact-mode logit tolerance: another CPU's summation
order may tip it, and from there the texts are different texts; `export/greedy_match.py`); the F32
LLM's logits within that tolerance at every teacher-forced position. A top-1 share of 1.0 is not
asked: one near tie among the ~100 positions flips it on one machine and not on another.
"""
from __future__ import annotations


def assert_end_to_end_matches(v: dict, total: int = 64) -> None:
    assert v["greedy_tokens_total"] == total and v["end_to_end_must_match"] is True
    for case in v["end_to_end"]:
        assert case["matches"], case
        if case["first_difference"] is not None:  # a near tie: recorded with its numbers
            assert case["first_difference"]["reference_gap"] <= case["first_difference"]["tie_width"], case


def assert_llm_exact(v: dict) -> None:
    llm = v["llm"]
    assert llm["precision"] == "F32" and llm["passed"] is True
    assert llm["all_positions_max_abs_diff"] <= llm["floor"]["max_abs_diff"], llm
    # Nothing but near ties may differ at the top: a flip needs a margin within twice the difference.
    assert llm["top1_agreement"] >= 0.95, llm


def hf_greedy_scored(model, inputs: dict, eog_ids: list[int], pad_token_id, n_tokens: int):
    """(new tokens, the logits transformers picked each from) of greedy generate, EOS banned."""
    import torch

    with torch.no_grad():
        out = model.generate(**inputs, do_sample=False, max_new_tokens=n_tokens, min_new_tokens=n_tokens,
                             eos_token_id=eog_ids, pad_token_id=pad_token_id, output_scores=True,
                             return_dict_in_generate=True)
    return out.sequences[0, inputs["input_ids"].shape[1]:].tolist(), [s[0].numpy() for s in out.scores]


def assert_greedy_matches(pipe, reference: list[int], scores, tokens: list[int]) -> None:
    """The bundle's greedy tokens are the reference's, or apart from a near tie on (its F32 tolerance)."""
    from mmedge.export.greedy_match import compare_greedy
    from mmedge.export.verify import exact_logit_tolerance

    match = compare_greedy(reference, scores, tokens, exact_logit_tolerance(pipe.manifest))
    assert match.matches, f"first difference at step {match.equal}: {match.first_difference}"
