"""Shared by every family's parity test: transformers' greedy reference and the checks each family
must pass (`FamilyParitySuite`; a family's test file subclasses it with its preset and cases)."""
from __future__ import annotations

import pytest

from mmedge.export.verify_inputs import synthetic_photo

from ..verification_checks import assert_end_to_end_matches, assert_greedy_matches, assert_llm_exact, hf_greedy_scored

N_TOKENS = 32


def load_reference(checkpoint):
    """The checkpoint in transformers, through the family's own loader (same model class and processor)."""
    from mmedge.export.checkpoint import architecture_of
    from mmedge.export.families import family_for_architecture

    family = family_for_architecture(architecture_of(checkpoint))
    return family, family.load(str(checkpoint))


def exact_pipeline_and_reference(bundles, checkpoints, preset: str, n_ctx: int = 1024):
    """A fixture body: the preset's fp32 bundle in exact mode, and its checkpoint in transformers."""
    from mmedge.runtime.pipeline import Pipeline, RuntimeOptions

    pipe = Pipeline(bundles(preset)[0], RuntimeOptions(exact=True, n_ctx=n_ctx))
    family, ckpt = load_reference(checkpoints(preset))
    yield pipe, family, ckpt
    pipe.close()


def hf_greedy(family, ckpt, images, text, eog_ids) -> tuple[list[int], list[int], list]:
    """(new tokens, prompt ids, the logits of each step) of transformers' greedy generate, EOS banned
    as on our side; the inputs are the HF processor's, called as the family calls it."""
    inputs = family.reference_inputs(ckpt, images, text)
    tokens, scores = hf_greedy_scored(ckpt.model, inputs, eog_ids, ckpt.processor.tokenizer.pad_token_id, N_TOKENS)
    return tokens, inputs["input_ids"][0].tolist(), scores


def check_greedy_parity(pipe, family, ckpt, sizes, prompt) -> list[int]:
    from mmedge.runtime.pipeline import GenerationParams

    images = [synthetic_photo(w, h, seed=100 + i) for i, (w, h) in enumerate(sizes)]
    text = pipe.format(prompt, len(images))
    ref, hf_prompt, scores = hf_greedy(family, ckpt, images, text, [int(t) for t in pipe.llm.eog_tokens])
    ours = pipe.generate(images, prompt, GenerationParams(max_new_tokens=N_TOKENS, min_new_tokens=N_TOKENS))
    assert len(ref) == N_TOKENS
    assert_greedy_matches(pipe, ref, scores, ours.tokens)
    assert len(set(ref)) > 8  # the random model's text varies, or parity would prove little
    marker_id = pipe.manifest.image.marker_token_id
    assert ours.prompt_tokens == [t for t in hf_prompt if t != marker_id]
    # The image-token runs are as long as HF's.
    prepared = pipe.prepare_images(images)
    assert sum(p.n_rows for p in prepared) == hf_prompt.count(marker_id)
    return ref


def check_report_is_exact(manifest, tiled: bool, split_tolerance: float = 0.0) -> None:
    v = manifest.verification
    assert_end_to_end_matches(v)
    assert all(c["prompt_tokens_equal"] for c in v["end_to_end"])
    assert v["preprocess"]["max_abs_diff"] == 0.0
    if tiled:  # several encoder inputs per image
        assert v["preprocess"]["encoder_inputs"] > v["preprocess"]["images"]
    assert v["split_vs_model_max_abs_diff"] <= split_tolerance
    for part in ("vision_encoder", "projector"):
        assert v[part]["cosine"] > 0.99999 and v[part]["max_abs_diff"] < 1e-3
    assert_llm_exact(v)


class FamilyParitySuite:
    """One preset of one family: two cases (one image placed by the chat template, two images
    placed by markers), chosen to exercise the family's special path."""

    preset: str
    cases: tuple  # ((sizes, prompt), (sizes, prompt))
    tiled: bool = True
    n_ctx: int = 1024
    # How far the split encoder + projector may be from the model's own image features (0.0 unless
    # the split computes the same thing in another order, e.g. a mask in place of a per-window split).
    split_tolerance: float = 0.0

    @pytest.fixture(scope="class")
    @classmethod
    def exact_pipeline(cls, bundles, checkpoints):
        yield from exact_pipeline_and_reference(bundles, checkpoints, cls.preset, cls.n_ctx)

    @pytest.mark.parametrize("case", [0, 1], ids=["one-image", "two-images"])
    def test_greedy_tokens_equal_transformers_generate(self, exact_pipeline, case):
        pipe, family, ckpt = exact_pipeline
        sizes, prompt = self.cases[case]
        check_greedy_parity(pipe, family, ckpt, sizes, prompt)

    def test_generation_depends_on_the_image(self, exact_pipeline):
        """Control for the equality above: another image gives other tokens."""
        from mmedge.runtime.pipeline import GenerationParams

        pipe = exact_pipeline[0]
        params = GenerationParams(max_new_tokens=8, min_new_tokens=8)
        a = pipe.generate([synthetic_photo(90, 70, seed=1)], "What is it?", params).tokens
        b = pipe.generate([synthetic_photo(90, 70, seed=2)], "What is it?", params).tokens
        assert a != b

    def test_export_report_is_exact(self, bundles):
        _, manifest = bundles(self.preset)
        check_report_is_exact(manifest, self.tiled, self.split_tolerance)
        self.check_layout(manifest.image.layout)

    def check_layout(self, layout) -> None:
        """The family's layout as exported (each suite says what it must be)."""
        raise NotImplementedError


class AnyResParitySuite(FamilyParitySuite):
    max_num_patches: int | None

    def check_layout(self, layout) -> None:
        assert (layout.kind, layout.tile_size, layout.feature_side, layout.max_num_patches) == (
            "anyres", 32, 4, self.max_num_patches)
