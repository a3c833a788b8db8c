"""Manifest fields of the Gemma families: image.attention, image.embedding_divisor,
prompt.first_position and the single-wrapped layout; defaults keep older bundles valid."""
from __future__ import annotations

import pytest

from mmedge.image_layouts import SingleView, SingleViewWrapped
from mmedge.manifest import Manifest

from .manifest_helpers import manifest_error


def test_defaults_are_llava_behaviour(valid):
    m = Manifest.from_dict(valid)
    assert (m.image.attention, m.image.embedding_divisor, m.prompt.first_position) == ("causal", 1.0, 0)
    assert m.image.layout == SingleView()


def test_gemma_fields_round_trip(valid):
    valid["image"].update(attention="prefix", embedding_divisor=8.0,
                          layout={"kind": "single-wrapped", "image_token": "<soft>", "before": "\n\n<boi>", "after": "<eoi>\n\n"})
    valid["prompt"]["first_position"] = 1
    m = Manifest.from_dict(valid)
    assert (m.image.attention, m.image.embedding_divisor, m.prompt.first_position) == ("prefix", 8.0, 1)
    assert m.image.layout == SingleViewWrapped(image_token="<soft>", before="\n\n<boi>", after="<eoi>\n\n")
    assert Manifest.from_dict(m.to_dict()).to_dict() == m.to_dict()


@pytest.mark.parametrize("mode", ["bidirectional", "Causal", ""])
def test_unknown_attention_mode(valid, mode):
    valid["image"]["attention"] = mode
    assert manifest_error(valid).startswith(f"image.attention: expected one of ['causal', 'bidirectional-image', 'prefix'], found {mode!r}")


@pytest.mark.parametrize("divisor", [0, -8.0, float("inf"), True, "8"])
def test_bad_embedding_divisor(valid, divisor):
    valid["image"]["embedding_divisor"] = divisor
    assert manifest_error(valid).startswith("image.embedding_divisor: expected")


@pytest.mark.parametrize("position", [-1, 1 << 21])
def test_bad_first_position(valid, position):
    valid["prompt"]["first_position"] = position
    assert manifest_error(valid).startswith("prompt.first_position: expected 0 .. 2^20")


def test_wrapped_layout_needs_its_image_token(valid):
    valid["image"]["layout"] = {"kind": "single-wrapped", "before": "x"}
    assert "image.layout.image_token" in manifest_error(valid)
