"""An F32 LLM is judged by its largest logit difference from PyTorch, not by a top-1 share; what the
config says llama.cpp cannot compute is refused by name before any weight is read.

- A Llama backbone whose config says `hidden_act: gelu` (transformers' LLaVA testers do): llama.cpp's
  llama graph computes SiLU and reads no activation from the GGUF. Refused at the start of export.
- A Qwen2-VL backbone whose RMS-norm epsilon matters: llama.cpp's qwen2vl graph never reads the
  epsilon (computes with 0). Its top-1 share can stay high on flat logits; its logits move past the
  exact tolerance, and export refuses it by the number, naming the known deviation.
"""
from __future__ import annotations

import json
import shutil

import pytest

from mmedge.errors import BelowFloorError, UnsupportedConfigError

from .test_export_errors import refuse


def _edited(checkpoints, tmp_path, preset: str, **text_changes):
    ckpt = tmp_path / preset
    shutil.copytree(checkpoints(preset), ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config["text_config"].update(text_changes)
    (ckpt / "config.json").write_text(json.dumps(config))
    return ckpt


@pytest.mark.parametrize("preset, act", [("clip-llama-bpe", "gelu"), ("siglip-qwen2-tied", "gelu_pytorch_tanh"),
                                         ("gemma3-siglip", "silu")])
def test_an_activation_llama_cpp_does_not_compute_is_refused_by_name(checkpoints, tmp_path, preset, act):
    from mmedge.export.exporter import ExportConfig

    key = "hidden_activation" if preset.startswith("gemma") else "hidden_act"
    ckpt = _edited(checkpoints, tmp_path, preset, **{key: act})
    message = refuse(UnsupportedConfigError, ExportConfig(checkpoint=ckpt, output=tmp_path / "b"))
    assert f"text_config.hidden_act {act!r}" in message and "graph computes its FFN with" in message


def test_an_f32_llm_that_computes_another_function_is_refused_by_the_number(checkpoints, tmp_path):
    from mmedge.export.exporter import ExportConfig, export_bundle

    ckpt = _edited(checkpoints, tmp_path, "qwen2vl-tiny", rms_norm_eps=1e-2)
    with pytest.raises(BelowFloorError, match=r"llm: max\|diff\| [\d.e-]+ > [\d.e-]+.*epsilon 0"):
        export_bundle(ExportConfig(checkpoint=ckpt, output=tmp_path / "refused"))
    assert not (tmp_path / "refused").exists()
    m = export_bundle(ExportConfig(checkpoint=ckpt, output=tmp_path / "kept", allow_below_floor=True))
    llm = m.verification["llm"]
    assert llm["passed"] is False and llm["all_positions_max_abs_diff"] > 10 * llm["floor"]["max_abs_diff"]
    assert llm["top1_agreement"] >= 0.9  # what a top-1 floor would have let through
    assert "epsilon 0" in m.parts["llm"].details["deviations"][0]


def test_the_f32_floor_is_relative_to_the_logits(bundles):
    """The report states the floor it was judged by, scaled by the reference's largest |logit|."""
    llm = bundles("clip-llama-bpe")[1].verification["llm"]
    assert llm["floor"]["max_abs_diff"] == pytest.approx(2e-5 * llm["largest_logit"])
    assert llm["passed"] and llm["all_positions_max_abs_diff"] <= llm["floor"]["max_abs_diff"]
