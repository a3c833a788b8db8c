"""The benchmark suite's shape-faithful presets: real models' shapes, random weights.

Building the real-shape presets writes 0.5 GB, 1.8 GB and 1.8 GB of safetensors and loads them (about a
minute and 5 GB of RAM on 2 cores), so those tests are `slow` (run with -m slow); the test-size
preset runs in the normal suite.
"""
from __future__ import annotations

import hashlib

import pytest


def _load(path):
    from mmedge.export.checkpoint import architecture_of
    from mmedge.export.families import family_for_architecture

    family = family_for_architecture(architecture_of(path))
    return family, family.load(str(path))


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tiny_preset_is_seeded_loadable_and_has_the_token_libmtmd_looks_up(tmp_path):
    from benchmarks.presets import build_shape_preset, checkpoint_stats

    a = build_shape_preset("smolvlm-tiny", tmp_path / "a", seed=3)
    b = build_shape_preset("smolvlm-tiny", tmp_path / "b", seed=3)
    c = build_shape_preset("smolvlm-tiny", tmp_path / "c", seed=4)
    assert _sha(a / "model.safetensors") == _sha(b / "model.safetensors")
    assert _sha(a / "model.safetensors") != _sha(c / "model.safetensors")
    family, ckpt = _load(a)
    assert family.info.name == "idefics3"
    assert ckpt.processor.image_seq_len == 4  # 8x8 patches, pixel shuffle x4
    tok = ckpt.processor.tokenizer
    assert len(tok("\n\n", add_special_tokens=False)["input_ids"]) == 1
    assert checkpoint_stats(a)["parameters"] == sum(p.numel() for p in ckpt.model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("name, params, tokens_per_tile, width, rows", [
    ("smolvlm-256m-shape", 256_484_928, 64, 576, 49280),
    ("onevision-0.5b-shape", 893_675_552, 729, 896, 152000),
    ("llava-interleave-0.5b-shape", 893_674_656, 729, 896, 152000),  # OneVision's parts, no image_newline
])
def test_shape_preset_has_the_real_shapes_and_loads(tmp_path, name, params, tokens_per_tile, width, rows):
    from benchmarks.presets import build_shape_preset, checkpoint_stats

    path = build_shape_preset(name, tmp_path / name)
    stats = checkpoint_stats(path)
    assert stats["parameters"] == params
    assert stats["bytes"] > 2 * params  # bfloat16
    family, ckpt = _load(path)
    slot = family.image_slot(ckpt)
    assert (slot.tokens_per_image, slot.embedding_dim) == (tokens_per_tile, width)
    assert ckpt.config.text_config.vocab_size == rows
    assert ckpt.model.get_input_embeddings().weight.shape == (rows, width)
