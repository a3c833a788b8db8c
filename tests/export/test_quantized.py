"""Quantized bundles: the measured numbers are reported, held to the recipe floors, and the
GGUF's real tensor types are what the manifest says. The K-quant model has widths that are
multiples of 256 (rows of 256 and 512), so Q4_K_M really writes K-quants."""
from __future__ import annotations

import pytest

from mmedge.export.gguf.inspect import tensor_type_counts, tensor_types
from mmedge.quantize.recipes import LLM_RECIPES, TENSOR_RECIPES

from ..conftest import KQUANT_PRESET

COMBOS = [
    ("int8", "int8", "Q8_0"),
    ("int4", "int4", "Q4_K_M"),
    ("fp32", "fp32", "Q4_0"),
    ("fp32", "fp32", "F16"),
]


@pytest.mark.parametrize("encoder, projector, llm", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_quantized_bundle_meets_floors(bundles, encoder, projector, llm):
    path, manifest = bundles(KQUANT_PRESET, encoder, projector, llm)
    v = manifest.verification
    for part, precision in (("vision_encoder", encoder), ("projector", projector)):
        assert v[part]["precision"] == precision
        assert v[part]["cosine"] >= TENSOR_RECIPES[precision].min_cosine
        if precision != "fp32":
            # Quantization must actually have happened: not bit-identical to fp32.
            assert v[part]["max_abs_diff"] > 1e-4
    assert v["llm"]["top1_agreement"] >= LLM_RECIPES[llm].min_top1
    assert v["llm"]["last_logit_max_abs_diff"] > 1e-5  # not F32 in disguise
    assert 0 <= v["greedy_tokens_equal"] <= v["greedy_tokens_total"] == 64
    # The manifest's tensor types are read back from the file, not the requested name.
    gguf_path = path / manifest.parts["llm"].file
    assert manifest.parts["llm"].details["tensor_types"] == tensor_type_counts(gguf_path)


def test_quantized_onnx_graphs_hold_quantized_ops(bundles):
    import onnx

    path, m = bundles(KQUANT_PRESET, "int8", "int8", "Q8_0")
    ops = {n.op_type for n in onnx.load(str(path / m.parts["vision_encoder"].file)).graph.node}
    assert ops & {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul"}
    path, m = bundles(KQUANT_PRESET, "int4", "int4", "Q4_K_M")
    ops = [n.op_type for n in onnx.load(str(path / m.parts["projector"].file)).graph.node]
    assert ops.count("MatMulNBits") == m.parts["projector"].details["matmuls_quantized"] == 2


def test_k_quants_are_real_on_256_wide_rows(bundles):
    path, m = bundles(KQUANT_PRESET, "int4", "int4", "Q4_K_M")
    types = tensor_types(path / m.parts["llm"].file)
    assert types["blk.0.attn_q.weight"] == "Q4_K"
    assert types["blk.0.ffn_down.weight"] in ("Q4_K", "Q6_K")  # Q4_K_M keeps some at Q6_K on purpose
    assert "fallback_note" not in m.parts["llm"].details


@pytest.mark.parametrize("llm, dims", [("Q4_K_M", "hidden_size 64 is not a multiple of Q4_K's block of 256"),
                                       ("Q4_0", "hidden_size 64 is not a multiple of Q6_K's block of 256 (output.weight)")])
def test_a_type_llama_cpp_would_replace_is_refused_before_the_weights(tmp_path, checkpoints, llm, dims):
    """On 64-wide rows llama.cpp cannot write K-quants (Q4_0 keeps its output matrix in Q6_K): it
    would silently write other types, so export refuses by name, before any weight is read."""
    from mmedge.errors import RecipeError
    from mmedge.export.exporter import ExportConfig

    from .test_export_errors import refuse

    message = refuse(RecipeError, ExportConfig(checkpoint=checkpoints("clip-llama-bpe"), output=tmp_path / "b", llm=llm))
    assert dims in message and "--allow-quant-fallback" in message


def test_k_quant_fallback_when_allowed_is_listed_not_hidden(tmp_path, checkpoints):
    """Allowed, the fallback is kept and every tensor that fell back is in the manifest, with the
    real types read back from the file."""
    from mmedge.export.exporter import ExportConfig, export_bundle

    m = export_bundle(ExportConfig(checkpoint=checkpoints("clip-llama-bpe"), output=tmp_path / "b", llm="Q4_K_M",
                                   allow_quant_fallback=True, verify=False))
    details = m.parts["llm"].details
    real = tensor_types(tmp_path / "b" / m.parts["llm"].file)
    assert details["tensor_types"] == tensor_type_counts(tmp_path / "b" / m.parts["llm"].file)
    assert "Q4_K" not in details["tensor_types"] and "Q6_K" not in details["tensor_types"]
    fallen = details["fallback_tensors"]
    assert fallen and all(real[name] == kind for name, kind in fallen.items())
    assert fallen["blk.0.attn_q.weight"] == real["blk.0.attn_q.weight"] != "Q4_K"
    assert "rows are not multiples of the type's block" in details["fallback_note"]
    assert m.verification == {"skipped": True}


def test_the_read_back_refuses_what_the_config_check_missed(tmp_path, checkpoints, monkeypatch):
    """The config check is a forecast; the file read back after quantizing decides. A forecast that
    lets Q4_K_M through on 64-wide rows still ends in a refusal, and nothing is published."""
    from mmedge.errors import RecipeError
    from mmedge.export.exporter import ExportConfig, export_bundle

    monkeypatch.setattr("mmedge.export.gguf.quantize.fallbacks_for", lambda *a, **k: [])
    with pytest.raises(RecipeError, match=r"llama.cpp wrote \d+ tensors in other types .*--allow-quant-fallback"):
        export_bundle(ExportConfig(checkpoint=checkpoints("clip-llama-bpe"), output=tmp_path / "b", llm="Q4_K_M",
                                   verify=False))
    assert not (tmp_path / "b").exists()
