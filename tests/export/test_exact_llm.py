"""An F32 LLM is judged by its largest logit difference from PyTorch, not by a top-1 share.

The control is a conversion that computes another model: a Llama backbone whose config says
`hidden_act: gelu`, which the GGUF (run by llama.cpp with SiLU) does not carry. Its top-1 share can
stay high on flat random logits; its logits move far past the exact tolerance, and export refuses it
by the number."""
from __future__ import annotations

import json
import shutil

import pytest

from mmedge.errors import BelowFloorError


def test_an_f32_llm_that_computes_another_function_is_refused(checkpoints, tmp_path):
    from mmedge.export.exporter import ExportConfig, export_bundle

    ckpt = tmp_path / "gelu"
    shutil.copytree(checkpoints("clip-llama-bpe"), ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config["text_config"]["hidden_act"] = "gelu"
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(BelowFloorError, match=r"llm: max\|diff\| [\d.e-]+ > [\d.e-]+"):
        export_bundle(ExportConfig(checkpoint=ckpt, output=tmp_path / "refused"))
    assert not (tmp_path / "refused").exists()
    m = export_bundle(ExportConfig(checkpoint=ckpt, output=tmp_path / "kept", allow_below_floor=True))
    llm = m.verification["llm"]
    assert llm["passed"] is False and llm["all_positions_max_abs_diff"] > 100 * llm["floor"]["max_abs_diff"]
    assert llm["floor"]["relative_to_largest_logit"] == 2e-5  # Llama's exact tolerance


def test_the_f32_floor_is_relative_to_the_logits(bundles):
    """The report states the floor it was judged by, scaled by the reference's largest |logit|."""
    llm = bundles("clip-llama-bpe")[1].verification["llm"]
    assert llm["floor"]["max_abs_diff"] == pytest.approx(2e-5 * llm["largest_logit"])
    assert llm["passed"] and llm["all_positions_max_abs_diff"] <= llm["floor"]["max_abs_diff"]
