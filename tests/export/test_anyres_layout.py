"""The anyres layout against transformers, boundary by boundary, on both tiny families:
tiles == the PIL image processor's pixel values (0.0), rows == the processor's image-token count,
assembled rows == the model's own `pack_image_features` output."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmedge.export.verify_inputs import synthetic_photo
from mmedge.runtime.layouts import image_layout
from tests.aten_capabilities import aten_capabilities, run_under

from .parity_helpers import load_reference

PRESETS = ("next-clip-llama", "onevision-siglip-qwen2")
# Odd sizes: wide, tall, tiny, larger than every pinpoint, square.
SIZES = ((97, 61), (45, 97), (33, 200), (200, 151), (13, 9), (77, 77), (301, 47))


@pytest.fixture(scope="module", params=PRESETS)
def reference(request, checkpoints):
    family, ckpt = load_reference(checkpoints(request.param))
    layout = image_layout(family.image_preprocess(ckpt), family.image_slot(ckpt))
    return request.param, family, ckpt, layout


def _photos(photos):
    crops = [photos["astronaut"].crop((10, 20, 10 + 211, 20 + 137)), photos["coffee"].crop((0, 0, 163, 299)),
             photos["chelsea"], photos["camera"].crop((5, 5, 100, 61))]  # camera: grayscale
    return crops + [synthetic_photo(w, h, seed=w) for w, h in SIZES]


def test_tiles_equal_hf_pixel_values(reference, photos):
    _, family, ckpt, layout = reference
    images = _photos(photos)
    hf = family.reference_pixel_values(ckpt, images, ckpt.processor.image_token).numpy()
    ours = np.concatenate([layout.prepare(img).tiles for img in images])
    assert ours.shape == hf.shape
    assert float(np.abs(ours - hf).max()) == 0.0


def test_rows_equal_hf_token_count(reference, photos):
    _, _, ckpt, layout = reference
    marker = ckpt.processor.image_token
    marker_id = ckpt.processor.tokenizer.convert_tokens_to_ids(marker)
    for img in _photos(photos):
        prepared = layout.prepare(img)
        hf_ids = ckpt.processor(images=[img], text=marker, return_tensors="pt")["input_ids"][0].tolist()
        assert prepared.n_rows == hf_ids.count(marker_id), img.size
        assert prepared.text == marker * prepared.n_rows


def test_assembled_rows_equal_pack_image_features(reference):
    preset, family, ckpt, layout = reference
    encoder, projector = family.vision_encoder(ckpt), family.projector(ckpt)
    pooled = 0
    for w, h in SIZES:
        img = synthetic_photo(w, h, seed=w + h)
        prepared = layout.prepare(img)
        inputs = ckpt.processor(images=[img], text=ckpt.processor.image_token, return_tensors="pt")
        with torch.no_grad():
            embeddings = projector(encoder(torch.from_numpy(prepared.tiles))).numpy()
            kwargs = {k: inputs[k] for k in ("pixel_values", "image_sizes", "batch_num_images") if k in inputs}
            hf = ckpt.model.model.get_image_features(**kwargs).pooler_output[0].numpy()
        ours = layout.assemble(prepared, embeddings)
        assert ours.shape == hf.shape == (prepared.n_rows, embeddings.shape[-1])
        diff = float(np.abs(ours - hf).max())
        if prepared.info["plan"].pooled is None:
            assert diff == 0.0, (w, h)
        else:
            # Bilinear pooling: torch's taps and weights to the bit, its summation order not (about 1 ulp).
            pooled += 1
            assert diff <= 1e-6 * float(np.abs(hf).max()), (w, h, diff)
    assert pooled == (1 if preset.startswith("onevision") else 0)


# The child: torch's float32 bilinear resize (OneVision's pooling) of random grids.
_TORCH_BILINEAR = """
import numpy as np
out = []
for h, w, oh, ow, seed in json.loads(sys.argv[1]):
    grid = (np.random.default_rng(seed).standard_normal((h, w, 8)) * 5).astype(np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(grid.transpose(2, 0, 1).copy())[None], [oh, ow],
                                          mode="bilinear")[0].numpy().transpose(1, 2, 0)
    out.append(ref.tolist())
print(json.dumps({"capability": _CAPABILITY, "resized": out}))
"""


@pytest.mark.parametrize("capability", aten_capabilities())
def test_bilinear_pooling_matches_torch(capability):
    """Taps to the bit under every torch kernel set (a tap one off shows as a difference of the
    grid's own size). Weights to the bit where torch fuses the source position into one multiply-add
    (avx2, avx512: then only the summation order differs, about 1 ulp); its portable build
    (`default`) rounds the product first, which moves weights by an ulp (measured up to 3.3e-6 of
    the grid's scale)."""
    from mmedge.runtime.layouts.anyres import bilinear_resize

    rng = np.random.default_rng(1)
    cases = [(12, 16, 10, 13, 0), (27, 54, 18, 37, 1), (7, 5, 3, 4, 2), (24, 24, 17, 17, 3), (26, 26, 13, 13, 4)]
    cases += [(int(h), int(w), int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1)), 10 + i)
              for i, (h, w) in enumerate(rng.integers(2, 40, size=(40, 2)))]
    child = run_under(capability, _TORCH_BILINEAR, json.dumps(cases))
    tolerance = 1e-5 if capability == "default" else 1e-6
    for (h, w, oh, ow, seed), ref in zip(cases, child["resized"], strict=True):
        grid = (np.random.default_rng(seed).standard_normal((h, w, 8)) * 5).astype(np.float32)
        ref = np.asarray(ref, np.float32)
        assert float(np.abs(bilinear_resize(grid, oh, ow) - ref).max()) <= tolerance * float(np.abs(ref).max()), \
            (capability, h, w, oh, ow)


def test_best_resolution_and_fit_equal_transformers():
    from transformers.image_processing_utils import get_patch_output_size, select_best_resolution

    from mmedge.runtime.layouts.anyres import best_resolution, fitted_size

    pinpoints = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008], [384, 384], [768, 1152]]
    rng = np.random.default_rng(1)
    for h, w in rng.integers(1, 2000, size=(300, 2)).tolist():
        best = best_resolution(h, w, pinpoints)
        assert best == tuple(select_best_resolution((h, w), pinpoints))
        assert fitted_size(h, w, *best) == get_patch_output_size(np.zeros((3, h, w)), best, "channels_first")
