"""Rope settings come from the config (transformers 5 keeps them in `rope_parameters`): scaled
ropes must give the same logits in llama.cpp as in PyTorch."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mmedge.export.gguf.writer import llama3_rope_factors

from ..verification_checks import assert_end_to_end_matches, assert_llm_exact

ROPES = {
    "linear": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0},
    "llama3": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
}


def test_llama3_factors_match_transformers():
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    cfg = LlamaConfig(hidden_size=64, num_attention_heads=4, rope_parameters=dict(ROPES["llama3"]))
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](cfg, "cpu")
    head_dim = 16
    base = 1.0 / (ROPES["llama3"]["rope_theta"] ** (np.arange(0, head_dim, 2) / head_dim))
    ours = llama3_rope_factors(ROPES["llama3"]["rope_theta"], head_dim, ROPES["llama3"])
    np.testing.assert_allclose(base / ours, scaled.numpy(), rtol=1e-5)
    assert ours.min() == 1.0 and ours.max() == 8.0  # both ends of the ramp are exercised


@pytest.mark.parametrize("kind", sorted(ROPES))
def test_scaled_rope_parity(kind, checkpoints, tmp_path):
    from mmedge.export.exporter import ExportConfig, export_bundle

    ckpt = tmp_path / "ckpt"
    shutil.copytree(checkpoints("clip-llama-bpe"), ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config["text_config"]["rope_parameters"] = ROPES[kind]
    (ckpt / "config.json").write_text(json.dumps(config))
    m = export_bundle(ExportConfig(checkpoint=ckpt, output=tmp_path / "bundle"))
    assert_llm_exact(m.verification)
    assert m.verification["llm"]["all_positions_max_abs_diff"] < 1e-3
    assert_end_to_end_matches(m.verification)


def test_unsupported_rope_is_refused(checkpoints, tmp_path):
    from mmedge.errors import UnsupportedConfigError
    from mmedge.export.exporter import ExportConfig, export_bundle

    ckpt = tmp_path / "ckpt"
    shutil.copytree(checkpoints("clip-llama-bpe"), ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config["text_config"]["rope_parameters"] = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                                "original_max_position_embeddings": 512}
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedConfigError, match="rope type 'yarn'"):
        export_bundle(ExportConfig(checkpoint=ckpt, output=tmp_path / "bundle"))
    assert not (tmp_path / "bundle").exists()
