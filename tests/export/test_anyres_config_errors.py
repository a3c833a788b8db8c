"""Checkpoint options the anyres families do not convert are refused with UnsupportedConfigError,
from config.json and the processor files, before the weights are read."""
from __future__ import annotations

import json
import shutil

import pytest

from mmedge.errors import UnsupportedConfigError
from mmedge.export.families import family_for_architecture


def _edited(checkpoints, tmp_path, preset, file, change):
    folder = tmp_path / preset
    shutil.copytree(checkpoints(preset), folder)
    data = json.loads((folder / file).read_text())
    change(data)
    (folder / file).write_text(json.dumps(data))
    for weights in folder.glob("*.safetensors"):  # proves the refusal comes before the weights are read
        weights.write_bytes(b"not safetensors")
    return folder


@pytest.mark.parametrize("preset, file, change, message", [
    ("next-clip-llama", "config.json", lambda c: c.update(vision_feature_select_strategy="full"),
     "vision_feature_select_strategy 'full' with a clip_vision_model: expected 'default'"),
    ("next-clip-llama", "config.json", lambda c: c.update(image_grid_pinpoints=[[32, 50]]),
     "image_grid_pinpoints entry [32, 50]: expected [height, width] in whole 32-pixel tiles"),
    ("onevision-siglip-qwen2", "config.json", lambda c: c.update(vision_aspect_ratio="anyres"),
     "vision_aspect_ratio 'anyres': expected 'anyres_max_N'"),
    ("onevision-siglip-qwen2", "processor_config.json", lambda c: c.update(vision_aspect_ratio="anyres_max_4"),
     "the processor's vision_aspect_ratio 'anyres_max_4' differs from the model's 'anyres_max_9'"),
    ("onevision-siglip-qwen2", "processor_config.json",
     lambda c: c["image_processor"].update(image_grid_pinpoints=[[32, 32]]),
     "the image processor's image_grid_pinpoints differ from the model config's"),
])
def test_unsupported_options_are_refused(checkpoints, tmp_path, preset, file, change, message):
    folder = _edited(checkpoints, tmp_path, preset, file, change)
    arch = json.loads((folder / "config.json").read_text())["architectures"][0]
    with pytest.raises(UnsupportedConfigError) as e:
        family_for_architecture(arch).load(str(folder))
    assert message in str(e.value)
