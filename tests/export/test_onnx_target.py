"""The ONNX parts keep a dynamic batch and compute what the PyTorch parts compute at any batch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmedge.export.verify import cosine


@pytest.mark.parametrize("batch", [1, 3])
def test_encoder_and_projector_accept_any_batch(bundles, checkpoints, batch):
    from mmedge.export.families import family_for_architecture
    from mmedge.runtime.backends import open_tensor_part

    path, m = bundles("clip-llama-bpe")
    family = family_for_architecture("LlavaForConditionalGeneration")
    ckpt = family.load(str(checkpoints("clip-llama-bpe")))
    h, w = m.image_preprocess.output_hw()
    x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        ref_feats = family.vision_encoder(ckpt)(x)
        ref_emb = family.projector(ckpt)(ref_feats)
    enc = open_tensor_part(path / m.parts["vision_encoder"].file, m.parts["vision_encoder"])
    proj = open_tensor_part(path / m.parts["projector"].file, m.parts["projector"])
    feats = enc.run(x.numpy())
    emb = proj.run(feats)
    assert feats.shape == tuple(ref_feats.shape)
    assert emb.shape == (batch, m.image.tokens_per_image, m.image.embedding_dim)
    assert np.abs(emb - ref_emb.numpy()).max() < 1e-4
    assert cosine(emb, ref_emb.numpy()) > 0.99999


def test_manifest_io_specs_are_symbolic_in_batch(bundles):
    _, m = bundles("clip-llama-bpe")
    enc = m.parts["vision_encoder"]
    assert enc.inputs[0].name == "pixel_values" and isinstance(enc.inputs[0].shape[0], str)
    assert enc.inputs[0].shape[1:] == [3, 48, 48] and enc.inputs[0].dtype == "float32"
    assert m.parts["projector"].outputs[0].shape[1:] == [m.image.tokens_per_image, m.image.embedding_dim]
