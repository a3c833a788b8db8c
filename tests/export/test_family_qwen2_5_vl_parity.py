"""Qwen2.5-VL parity: the fp32 bundle reproduces transformers' greedy `generate` token for token, with
the vision tower's window attention (block 0) and full attention (block 1); the window order and
numbers the layout computes in numpy equal transformers' get_vision_window_index."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmedge.export.verify_inputs import synthetic_photo

from .parity_helpers import FamilyParitySuite, load_reference

PRESET = "qwen25vl-tiny"


class TestQwen25VL(FamilyParitySuite):
    preset = PRESET
    cases = (
        (((131, 77),), "Describe this image."),
        (((45, 97), (150, 64)), "First <|image_pad|> then <|image_pad|>: what differs?"),
    )
    # The split encoder masks attention outside a window in one call where the model runs one
    # attention per window: the same sums in another order (measured 3.1e-6 on the verify images).
    split_tolerance = 1e-5

    def check_layout(self, layout) -> None:
        assert (layout.kind, layout.patch_size, layout.merge_size, layout.window_size) == ("qwen2vl-patches", 8, 2, 32)


@pytest.mark.parametrize("grid", [(10, 16), (12, 6), (16, 16), (8, 28), (4, 4)])
def test_window_order_equals_transformers(grid):
    from transformers.vision_utils import get_vision_window_index

    from mmedge.runtime.layouts.qwen2vl import window_order

    index, cu = get_vision_window_index(torch.tensor([[1, *grid]]), 2, 32, 8)
    order, window_of = window_order(*grid, merge=2, window=2)
    assert np.array_equal(order, index.numpy())
    assert np.array_equal(np.repeat(window_of, 4), np.repeat(np.arange(len(cu) - 1), np.diff(cu.numpy())))


def test_encoder_inputs_and_rows_equal_transformers(checkpoints, photos):
    """Window-ordered patches, rotary ids and window numbers equal the HF processor's inputs put in
    the model's own window order (0.0); the split parts in PyTorch give the model's own rows once the
    layout puts them back in image order."""
    from mmedge.runtime.layouts import image_layout

    family, ckpt = load_reference(checkpoints(PRESET))
    layout = image_layout(family.image_preprocess(ckpt), family.image_slot(ckpt))
    encoder, projector = family.vision_encoder(ckpt), family.projector(ckpt)
    for img in (photos["coffee"], photos["chelsea"].crop((0, 0, 301, 97)), synthetic_photo(131, 77, seed=3)):
        prepared = layout.prepare(img)
        ours = prepared.encoder_inputs()
        hf = family.reference_encoder_inputs(ckpt, img, "<|image_pad|>")
        assert sorted(ours) == sorted(hf) == ["pixel_values", "position_ids", "window_ids"]
        assert all(np.abs(ours[k] - hf[k].numpy()).max() == 0 for k in ours)
        with torch.no_grad():
            rows = layout.assemble(prepared, projector(encoder(**{k: torch.from_numpy(v) for k, v in ours.items()})).numpy())
            grid = torch.tensor([prepared.info["grid_thw"]])
            own = ckpt.model.model.get_image_features(pixel_values=ckpt.processor(images=[img], text="<|image_pad|>",
                                                      return_tensors="pt")["pixel_values"], image_grid_thw=grid)
        assert np.abs(rows - own.pooler_output[0].numpy()).max() < 1e-5
        assert len(set(prepared.extra_inputs["window_ids"].tolist())) > 1  # several windows really
