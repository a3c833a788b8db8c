"""LLaVA parity: fp32 ONNX encoder/projector + F32 GGUF in exact mode reproduce transformers'
greedy `generate` token for token, measured here independently of the exporter's own report."""
from __future__ import annotations

from .parity_helpers import FamilyParitySuite

CASES = (
    (((131, 77),), "Describe this image."),  # no marker: the chat template places it
    (((64, 96), (150, 40)), "First <image> then <image>: what differs?"),  # two images, markers
)


class LlavaSuite(FamilyParitySuite):
    cases = CASES
    tiled = False

    def check_layout(self, layout) -> None:
        assert layout.kind == "single"


class TestClipLlamaBpe(LlavaSuite):
    preset = "clip-llama-bpe"


class TestSiglipQwen2Tied(LlavaSuite):
    preset = "siglip-qwen2-tied"


def test_preset_shapes_cover_the_options(checkpoints):
    """The two parity presets exercise: CLIP and SigLIP, int and list feature layers, both
    strategies, Llama and Qwen2, untied and tied embeddings."""
    import json

    a = json.loads((checkpoints("clip-llama-bpe") / "config.json").read_text())
    b = json.loads((checkpoints("siglip-qwen2-tied") / "config.json").read_text())
    assert (a["vision_config"]["model_type"], a["text_config"]["model_type"]) == ("clip_vision_model", "llama")
    assert (b["vision_config"]["model_type"], b["text_config"]["model_type"]) == ("siglip_vision_model", "qwen2")
    assert isinstance(a["vision_feature_layer"], int) and isinstance(b["vision_feature_layer"], list)
    assert (a["vision_feature_select_strategy"], b["vision_feature_select_strategy"]) == ("default", "full")
    assert (a["tie_word_embeddings"], b["tie_word_embeddings"]) == (False, True)
