"""InstructBLIP parity: the fp32 bundle reproduces transformers' greedy `generate` token for token
(two single-image prompts: InstructBLIP takes one image per prompt), our pure-Python WordPiece
gives the Q-Former tokenizer's ids, the prompt really reaches the Q-Former, and what the family
cannot do (several images, markers, Flan-T5, other targets) is refused with named errors."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from mmedge.errors import PromptError, RecipeError, UnsupportedConfigError
from mmedge.export.verify_inputs import synthetic_photo

from ..runtime.test_torch_free import check_runs_without_torch
from .parity_helpers import FamilyParitySuite, exact_pipeline_and_reference

PRESET = "instructblip-llama"
SHORT = (((97, 61),), "What is shown in this picture?")
LONG = (((150, 64),), "Describe the colours, the shapes and the light of this photograph, then say what the robot does.")

WORDPIECE_STRINGS = [
    "What is shown in this picture?", "Hello, World!", "  leading and trailing spaces  ", "UPPER lower MiXeD",
    "café naïve résumé Über", "東京 is a city; 東京タワー", "numbers 3.14159 and 2026, 42!", "it's the camera's fault",
    '"quoted" (parens) [brackets] {braces}', "a-b_c/d\\e|f~g`h^i", "$100 + 5% = <math> & more @home #tag",
    "unknownwordzzqx", "supercalifragilisticexpialidocious", "x" * 101, "x" * 100, "tab\there\nnewline\rcr",
    "zero\u200bwidth", "nbsp\u00a0space", "control\x07char\x00nul\ufffdrepl", "emoji 🙂 ok", "Ελληνικά ΣΟΦΟΣ",
    "Straße", "İstanbul", "ﬁne ligature", "full-width ＡＢＣ", "[CLS] literal [SEP] tokens [MASK]", "[cls] lower",
    "", " ", "Question: how many people are standing near the bus? Answer: there are four people.",
    "The robot picks up the blue cube, rotates it twice, and places it on the green square.",
    "dots... and—dashes – too", "¿Qué? ¡Sí!", "apples,oranges;tea:coffee", "mañana piñata", "\u3000ideographic space",
]


class TestInstructBlip(FamilyParitySuite):
    preset = PRESET
    cases = (SHORT, LONG)
    tiled = False

    def check_layout(self, layout) -> None:
        assert layout.kind == "qformer-prefix"
        assert (layout.cls_token, layout.sep_token, layout.unk_token, layout.lowercase, layout.strip_accents) == (
            "[CLS]", "[SEP]", "[UNK]", True, True)
        assert layout.max_length == 64 and len(layout.vocab) == 300

    @pytest.mark.parametrize("case", [0, 1], ids=["short-instruction", "long-instruction"])
    def test_greedy_tokens_equal_transformers_generate(self, exact_pipeline, case):
        super().test_greedy_tokens_equal_transformers_generate(exact_pipeline, case)


@pytest.fixture(scope="module")
def blip(bundles, checkpoints):
    yield from exact_pipeline_and_reference(bundles, checkpoints, PRESET)


def test_wordpiece_ids_equal_the_qformer_tokenizer(blip):
    """Our torch-free WordPiece (vocab from the manifest) == HF's qformer_tokenizer, string by string."""
    pipe, _, ckpt = blip
    assert len(WORDPIECE_STRINGS) >= 30
    ours = [pipe.layout.tokenizer.encode(s) for s in WORDPIECE_STRINGS]
    hf = [ckpt.processor.qformer_tokenizer(s).input_ids for s in WORDPIECE_STRINGS]
    assert ours == hf
    unk = ckpt.processor.qformer_tokenizer.unk_token_id
    assert sum(unk in ids for ids in hf) >= 3  # unknown words and over-long words are exercised
    assert sum(len(ids) for ids in hf) > 300


def test_prompt_reaches_the_qformer_and_matches_hf(blip):
    """The runtime's projector inputs equal the HF processor's for the formatted prompt, and another
    instruction with the same image changes the projector output (the text reaches the Q-Former)."""
    pipe, family, ckpt = blip
    image = synthetic_photo(90, 70, seed=5)

    def rows(prompt):
        prepared = pipe.prepare_images([image])
        text = pipe.format(prompt, 1)
        pipe.plan(text, prepared)
        hf = family.reference_inputs(ckpt, [image], text)
        for name in ("qformer_input_ids", "qformer_attention_mask"):
            assert np.array_equal(prepared[0].projector_inputs[name], hf[name].numpy())
        with torch.no_grad():
            ref = family.reference_image_features(ckpt, hf["pixel_values"], hf["qformer_input_ids"],
                                                  hf["qformer_attention_mask"])[0].numpy()
        ours = pipe.image_rows(prepared)
        assert np.abs(ours - ref).max() < 1e-4
        return ours

    a, b = rows("What is it?"), rows("Describe the colours of every object in great detail.")
    assert np.abs(a - b).max() > 1e-2


def test_image_tokens_go_before_bos(blip):
    pipe, family, ckpt = blip
    image = synthetic_photo(60, 60, seed=1)
    text = pipe.format("What is it?", 1)
    plan = pipe.plan(text, pipe.prepare_images([image]))
    hf = family.reference_inputs(ckpt, [image], text)["input_ids"][0].tolist()
    n = ckpt.config.num_query_tokens
    assert hf[:n] == [pipe.manifest.image.marker_token_id] * n and hf[n] == ckpt.processor.tokenizer.bos_token_id
    assert plan.items[0].count == n and plan.items[1] == hf[n:]


@pytest.mark.parametrize("images, prompt, message", [
    (2, "What differs?", "exactly one image per prompt, got 2"),
    (0, "Just text.", "exactly one image per prompt, got 0"),
    (1, "Look at <image> here", "remove the image marker"),
])
def test_unsupported_prompts_are_refused(blip, images, prompt, message):
    pipe = blip[0]
    with pytest.raises(PromptError, match=message):
        pipe.generate([synthetic_photo(40, 40, seed=i) for i in range(images)], prompt)


def test_raw_prompt_takes_the_image_first(blip):
    """A raw prompt must start with the one marker; then it is the same prompt as the formatted one."""
    from mmedge.runtime.pipeline import GenerationParams

    pipe = blip[0]
    image, params = synthetic_photo(50, 40, seed=4), GenerationParams(max_new_tokens=6, min_new_tokens=6)
    formatted = pipe.generate([image], "What is it?", params).tokens
    assert pipe.generate([image], "<image>What is it?", params, raw_prompt=True).tokens == formatted
    with pytest.raises(PromptError, match="starts with the one image marker"):
        pipe.generate([image], "What is <image> it?", params, raw_prompt=True)


def test_overlong_prompt_is_refused(blip):
    pipe = blip[0]
    with pytest.raises(PromptError, match="Q-Former reads at most 64"):
        pipe.generate([synthetic_photo(40, 40, seed=0)], "word " * 80)


def _broken_copy(checkpoints, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(checkpoints(PRESET), folder)
    for weights in folder.glob("*.safetensors"):  # proves the refusal comes before the weights are read
        weights.write_bytes(b"not safetensors")
    return folder


def test_flan_t5_backbone_is_refused(checkpoints, tmp_path):
    from mmedge.export.families import family_for_architecture

    folder = _broken_copy(checkpoints, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["text_config"] = {"model_type": "t5", "d_model": 64, "num_layers": 1, "num_heads": 2, "vocab_size": 600}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedConfigError, match="Flan-T5 is an encoder-decoder"):
        family_for_architecture("InstructBlipForConditionalGeneration").load(str(folder))


@pytest.mark.parametrize("options, message", [
    ({"encoder_target": "executorch"}, "--target executorch: the instructblip family's parts cannot be compiled"),
    ({"projector_target": "coreml"}, "--target coreml: the instructblip family's parts cannot be compiled"),
    ({"projector": "int8-static"}, "static calibration"),
])
def test_targets_the_family_cannot_do_are_refused_up_front(checkpoints, tmp_path, options, message):
    from mmedge.export.exporter import ExportConfig, export_bundle

    folder = _broken_copy(checkpoints, tmp_path)
    with pytest.raises(RecipeError) as e:
        export_bundle(ExportConfig(checkpoint=folder, output=tmp_path / "b", **options))
    assert message in str(e.value)
    assert not (tmp_path / "b").exists()


def test_manifest_lists_the_projector_inputs(bundles):
    _, m = bundles(PRESET)
    proj = m.parts["projector"]
    assert [(t.name, t.dtype) for t in proj.inputs] == [
        ("image_features", "float32"), ("qformer_input_ids", "int64"), ("qformer_attention_mask", "int64")]
    assert isinstance(proj.inputs[1].shape[1], str) and proj.inputs[1].shape[1] == proj.inputs[2].shape[1]
    assert (m.image.marker, m.image.tokens_per_image, m.image.embedding_dim) == ("<image>", 8, 64)


def test_runtime_runs_without_torch(blip, bundles):
    """The WordPiece, the layout and the three-input projector run with torch and transformers unimportable."""
    check_runs_without_torch(blip[0], bundles(PRESET)[0])
