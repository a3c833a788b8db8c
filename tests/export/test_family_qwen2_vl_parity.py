"""Qwen2-VL parity: the fp32 bundle reproduces transformers' greedy `generate` token for token (one
image placed by the chat template; two images of different odd sizes placed by markers), the image
rows take get_rope_index's M-RoPE positions (and must: 1-D positions change the tokens), and
targets/recipes the family cannot compile are refused before any weight is read."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from mmedge.errors import RecipeError, UnsupportedConfigError
from mmedge.export.verify_inputs import synthetic_photo

from ..runtime.test_torch_free import check_runs_without_torch
from .parity_helpers import N_TOKENS, FamilyParitySuite, exact_pipeline_and_reference, hf_greedy

PRESET = "qwen2vl-tiny"
ONE_IMAGE = (((131, 77),), "Describe this image.")
TWO_IMAGES = (((45, 97), (150, 64)), "First <|image_pad|> then <|image_pad|>: what differs?")


class TestQwen2VL(FamilyParitySuite):
    preset = PRESET
    cases = (ONE_IMAGE, TWO_IMAGES)

    def check_layout(self, layout) -> None:
        assert (layout.kind, layout.patch_size, layout.merge_size, layout.temporal_patch_size) == (
            "qwen2vl-patches", 8, 2, 2)
        assert (layout.min_pixels, layout.max_pixels, layout.image_pad_token, layout.window_size) == (
            1024, 16384, "<|image_pad|>", None)


@pytest.fixture(scope="module")
def qwen(bundles, checkpoints):
    yield from exact_pipeline_and_reference(bundles, checkpoints, PRESET)


def _images(sizes):
    return [synthetic_photo(w, h, seed=100 + i) for i, (w, h) in enumerate(sizes)]


@pytest.mark.parametrize("case", [ONE_IMAGE, TWO_IMAGES], ids=["one-image", "two-images"])
def test_positions_after_prefill_equal_get_rope_index(qwen, case):
    """Every image row sits on its grid and the text after it resumes where get_rope_index says:
    after the prefill, the next position equals transformers' max position + 1."""
    pipe, family, ckpt = qwen
    sizes, prompt = case
    images = _images(sizes)
    text = pipe.format(prompt, len(images))
    inputs = family.reference_inputs(ckpt, images, text)
    positions, _ = ckpt.model.model.get_rope_index(inputs["input_ids"], inputs["mm_token_type_ids"],
                                                    image_grid_thw=inputs["image_grid_thw"])
    prepared = pipe.prepare_images(images)
    plan = pipe.plan(text, prepared)
    pipe.llm.reset()
    pipe._prefill(plan, pipe.image_rows(prepared), prepared)
    assert pipe.llm.n_past == inputs["input_ids"].shape[1]
    assert pipe.llm.next_pos == int(positions.max()) + 1 < pipe.llm.n_past  # the grid really compresses positions
    # Each image's grid is transformers' own, offset by the image's first position.
    thw = inputs["image_grid_thw"].tolist()
    assert [p.info["grid_thw"] for p in prepared] == [tuple(g) for g in thw]
    pads = (inputs["input_ids"][0] == pipe.manifest.image.marker_token_id).nonzero().ravel().tolist()
    hf_image_positions = positions[:, 0, pads].numpy()
    ours = np.concatenate([p.grid + hf_image_positions[0, sum(q.n_rows for q in prepared[:i])]
                           for i, p in enumerate(prepared)], axis=1)
    assert np.array_equal(ours, hf_image_positions)


def test_one_dimensional_positions_change_the_tokens(qwen):
    """Control: the same bundle with the image rows on consecutive (1-D) positions gives other tokens,
    so the parity above depends on the M-RoPE grid."""
    from mmedge.runtime.pipeline import GenerationParams

    pipe, family, ckpt = qwen
    sizes, prompt = ONE_IMAGE
    images = _images(sizes)
    ref, _, _ = hf_greedy(family, ckpt, images, pipe.format(prompt, 1), [int(t) for t in pipe.llm.eog_tokens])
    params = GenerationParams(max_new_tokens=N_TOKENS, min_new_tokens=N_TOKENS)
    grid = pipe.generate(images, prompt, params).tokens
    original = pipe.prepare_images
    pipe.prepare_images = lambda imgs: [_without_grid(p) for p in original(imgs)]
    try:
        flat = pipe.generate(images, prompt, params).tokens
    finally:
        pipe.prepare_images = original
    assert grid == ref
    assert flat != ref


def _without_grid(prepared):
    from dataclasses import replace

    return replace(prepared, grid=None)


def test_adjacent_images_take_one_grid_each():
    """Two images whose tokens touch (markers side by side) form one run; it is decoded image by
    image so that each grid starts at its own image's first position."""
    from mmedge.runtime.layouts import PreparedImage
    from mmedge.runtime.prefill import image_pieces
    from mmedge.runtime.prompt import ImageRows

    a = PreparedImage(np.zeros((8, 4)), "", 2, grid=np.zeros((3, 2), np.int64))
    b = PreparedImage(np.zeros((12, 4)), "", 3, grid=np.zeros((3, 3), np.int64))
    pieces = list(image_pieces(ImageRows(0, 5), [a, b]))
    assert [(s, n) for s, n, _ in pieces] == [(0, 2), (2, 3)]
    assert pieces[0][2] is a.grid and pieces[1][2] is b.grid


def test_encoder_runs_one_image_per_call(qwen):
    """Why images are never batched: two images' patches in one call attend to each other, so the
    result differs from two calls; the per-image calls equal PyTorch on each image."""
    pipe, family, ckpt = qwen
    prepared = pipe.prepare_images(_images(((45, 97), (150, 64))))
    apart = [pipe.encoder.run(p.encoder_inputs()) for p in prepared]
    names = list(prepared[0].encoder_inputs())
    together = pipe.encoder.run({k: np.concatenate([p.encoder_inputs()[k] for p in prepared]) for k in names})
    assert np.abs(np.concatenate(apart) - together).max() > 1e-3
    encoder = family.vision_encoder(ckpt)
    with torch.no_grad():
        ref = [encoder(**{k: torch.from_numpy(v) for k, v in p.encoder_inputs().items()}).numpy() for p in prepared]
    assert max(np.abs(a - r).max() for a, r in zip(apart, ref)) < 1e-4


@pytest.mark.parametrize("options, message", [
    ({"encoder_target": "executorch"}, "--target executorch: the qwen2_vl family's parts cannot be compiled for executorch"),
    ({"projector_target": "coreml"}, "--target coreml: the qwen2_vl family's parts cannot be compiled for coreml"),
    ({"extra_targets": ("executorch",)}, "--target executorch"),
    ({"encoder": "int8-static"}, "static calibration"),
])
def test_targets_and_recipes_the_family_cannot_do_are_refused_up_front(checkpoints, tmp_path, options, message):
    from mmedge.export.exporter import ExportConfig, export_bundle

    folder = tmp_path / "ckpt"
    shutil.copytree(checkpoints(PRESET), folder)
    for weights in folder.glob("*.safetensors"):  # proves the refusal comes before the weights are read
        weights.write_bytes(b"not safetensors")
    with pytest.raises(RecipeError) as e:
        export_bundle(ExportConfig(checkpoint=folder, output=tmp_path / "b", **options))
    assert message in str(e.value)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("file, change, message", [
    ("config.json", lambda c: c["text_config"]["rope_parameters"].update(rope_type="linear", factor=2.0),
     "mmedge converts default M-RoPE with mrope_section only"),
    ("preprocessor_config.json", lambda c: c.update(patch_size=14), "the image processor's patch_size 14 differs"),
    ("preprocessor_config.json", lambda c: c.update(do_resize=False), "do_resize=False are not supported"),
])
def test_unsupported_options_are_refused(checkpoints, tmp_path, file, change, message):
    from mmedge.export.families import family_for_architecture

    folder = tmp_path / "ckpt"
    shutil.copytree(checkpoints(PRESET), folder)
    data = json.loads((folder / file).read_text())
    change(data)
    (folder / file).write_text(json.dumps(data))
    for weights in folder.glob("*.safetensors"):
        weights.write_bytes(b"not safetensors")
    with pytest.raises(UnsupportedConfigError) as e:
        family_for_architecture("Qwen2VLForConditionalGeneration").load(str(folder))
    assert message in str(e.value)


def test_manifest_lists_both_encoder_inputs(bundles):
    """The two-input encoder is described in full: names, dtypes, one symbolic dim 0 shared by both;
    the projector merges 4 patches into one row."""
    _, m = bundles(PRESET)
    enc, proj = m.parts["vision_encoder"], m.parts["projector"]
    assert [(t.name, t.dtype) for t in enc.inputs] == [("pixel_values", "float32"), ("position_ids", "int64")]
    assert enc.inputs[0].shape[1:] == [3 * 2 * 8 * 8] and enc.inputs[1].shape[1:] == [2]
    assert isinstance(enc.inputs[0].shape[0], str) and enc.inputs[0].shape[0] == enc.inputs[1].shape[0]
    assert proj.outputs[0].shape[1:] == [m.image.embedding_dim] and "4" in str(proj.outputs[0].shape[0])
    assert (m.image.marker, m.image.tokens_per_image) == ("<|image_pad|>", 1)


def test_runtime_runs_without_torch(qwen, bundles):
    """The Qwen2-VL layout and the two-input encoder run with torch and transformers unimportable."""
    check_runs_without_torch(qwen[0], bundles(PRESET)[0])
