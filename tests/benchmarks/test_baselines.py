"""The benchmark baselines run and measure what they say, on the tiny models (seconds)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

LLAMA_CPP_SRC = Path(os.environ.get("MMEDGE_LLAMA_CPP_SRC", "/tmp/lcp/llama_cpp_python-0.3.36/vendor/llama.cpp"))


def test_raw_decode_times_every_step_and_agrees_with_llama_perf(fp32_bundle):
    from benchmarks.baselines.raw_llama import raw_decode

    r = raw_decode(fp32_bundle, n_prompt=20, n_decode=8, threads=1, n_ctx=256)
    assert len(r["decode_steps_s"]) == len(r["sample_steps_s"]) == 8
    assert len(r["tokens"]) == 9
    assert r["llama_perf"]["n_decode"] == 8  # llama.cpp counted exactly our single-token decodes
    assert r["llama_perf"]["n_prefill"] == 20
    assert 0 < sum(r["decode_steps_s"]) <= r["decode_total_s"]


def test_raw_decode_is_greedy_llama_cpp(fp32_bundle):
    """The same prompt ids through mmedge's LLM wrapper give the same greedy tokens: the baseline
    decodes the model, only without mmedge around it."""
    from benchmarks.baselines.raw_llama import raw_decode
    from mmedge.runtime.llamacpp import LlamaModel, LlamaOptions

    r = raw_decode(fp32_bundle, n_prompt=12, n_decode=6, threads=1, n_ctx=256)
    llm = LlamaModel(r["gguf"], LlamaOptions(n_ctx=256, n_threads=1))
    try:
        text = "Describe the picture in detail, then answer the question briefly. "
        ids = llm.tokenize(text, add_special=False, parse_special=False)
        prompt = [ids[i % len(ids)] for i in range(12)]
        logits = llm.decode_tokens(prompt)
        ours = [int(np.argmax(logits))]
        for _ in range(6):
            ours.append(int(np.argmax(llm.decode_tokens([ours[-1]]))))
    finally:
        llm.close()
    assert ours == r["tokens"]


def test_mmedge_overhead_is_measured_in_the_same_run(fp32_bundle):
    from benchmarks.baselines.raw_llama import mmedge_decode

    r = mmedge_decode(fp32_bundle, n_decode=6, threads=1, reps=1)
    assert 0 < r["outside_llama_decode_s_per_token"] < r["decode_step_s"]
    assert r["prompt_positions"] > 0


def test_bytes_per_token_counts_one_embedding_row_for_an_untied_head(fp32_bundle):
    from gguf import GGUFReader

    from benchmarks.baselines.bandwidth import decode_bound, gguf_bytes_per_token

    b = gguf_bytes_per_token(fp32_bundle, n_ctx=100)
    tensors = {t.name: t for t in GGUFReader(b["gguf"]).tensors}
    assert not b["tied_head"] and "output.weight" in tensors
    emb = tensors["token_embd.weight"]
    row = int(emb.n_bytes) // int(emb.shape[-1])
    assert b["weights_bytes"] == sum(int(t.n_bytes) for t in tensors.values()) - int(emb.n_bytes) + row
    # tiny LLaVA text model: 2 layers, 2 KV heads of 16, F16 cache
    assert b["kv_bytes_at_ctx"] == 2 * 2 * 100 * 2 * 16 * 2
    assert decode_bound(10.0, b) == pytest.approx(10e9 / (b["weights_bytes"] + b["kv_bytes_at_ctx"]))


def test_bandwidth_kernels_report_positive_rates():
    from benchmarks.baselines.bandwidth import measure_bandwidth

    bw = measure_bandwidth(mib=8, threads=2, reps=1)
    assert all(bw[k] > 0 for k in ("read_GBps", "read_1thread_GBps", "dot_GBps", "copy_GBps", "triad_GBps", "gemv_GBps"))
    assert bw["bandwidth_GBps"] == max(bw["read_GBps"], bw["read_1thread_GBps"], bw["dot_GBps"], bw["gemv_GBps"])


def test_hf_eager_stages_split_one_forward_and_decode_with_the_cache(checkpoints, photos):
    """Stages come from one HF forward; the cached decode loop's tokens equal a single uncached
    forward over prompt + generated tokens (teacher forcing)."""
    import torch

    from benchmarks.baselines.hf_eager import HFEager

    runner = HFEager(checkpoints("clip-llama-bpe"), threads=1)
    image = photos["coffee"]
    r = runner.generate(image, "What is in this image?", n_decode=6)
    assert r["encode_s"] > 0 and r["prefill_s"] > 0 and r["decode_s"] > 0
    inputs = runner.family.reference_inputs(runner.ckpt, [image], runner.format("What is in this image?"))
    ids = torch.cat([inputs["input_ids"], torch.tensor([r["tokens"][:-1]])], dim=1)
    with torch.no_grad():
        logits = runner.model(input_ids=ids, attention_mask=torch.ones_like(ids),
                              pixel_values=inputs["pixel_values"]).logits
    n = inputs["input_ids"].shape[1]
    assert logits[0, n - 1:].argmax(-1).tolist() == r["tokens"]
    assert len(set(r["tokens"])) > 1  # the tiny model's text varies


@pytest.mark.slow
@pytest.mark.skipif(not (LLAMA_CPP_SRC / "convert_hf_to_gguf.py").is_file(),
                    reason="llama.cpp's source (convert_hf_to_gguf.py) not found; set MMEDGE_LLAMA_CPP_SRC")
def test_libmtmd_runs_smolvlm_with_mmedges_text_gguf_and_the_same_token_layout(tmp_path, photos):
    """llama.cpp's converter writes the mmproj, mmedge writes the text GGUF, libmtmd runs both:
    the image becomes as many image tokens, and the prompt as many positions, as in mmedge."""
    from benchmarks.baselines.llama_mtmd import mtmd_generate
    from benchmarks.presets import build_shape_preset
    from mmedge.export.exporter import ExportConfig, export_bundle
    from mmedge.runtime.pipeline import GenerationParams, Pipeline, RuntimeOptions

    ckpt = build_shape_preset("smolvlm-tiny", tmp_path / "ckpt", dtype="float32")
    bundle = tmp_path / "bundle"
    export_bundle(ExportConfig(checkpoint=ckpt, output=bundle, llm="F32", verify=False))
    mmproj = tmp_path / "mmproj.gguf"
    subprocess.run([sys.executable, str(LLAMA_CPP_SRC / "convert_hf_to_gguf.py"), str(ckpt), "--mmproj",
                    "--outtype", "f32", "--outfile", str(mmproj)], check=True, capture_output=True)
    image = photos["astronaut"].resize((640, 480))
    pipe = Pipeline(str(bundle), RuntimeOptions(threads=1))
    ours = pipe.generate([image], "Describe the picture.", GenerationParams(max_new_tokens=2, min_new_tokens=2))
    pipe.close()
    prompt = "User:<__media__> Describe the picture.<end_of_utterance>\nAssistant:"
    r = mtmd_generate(bundle / "llm.F32.gguf", mmproj, image, prompt, n_decode=4, threads=1, n_ctx=1024, reps=1)
    assert r["image_chunks"] == 13  # 640x480 -> 256x192 -> 4x3 tiles of 64 px + the global view
    assert r["image_tokens"] == 13 * 4
    assert r["prompt_positions"] == ours.stats.prompt_positions
    assert len(r["tokens"]) == 4


@pytest.mark.slow
@pytest.mark.skipif(not (LLAMA_CPP_SRC / "tools/mtmd/legacy-models").is_dir(),
                    reason="llama.cpp's source (legacy converters) not found; set MMEDGE_LLAMA_CPP_SRC")
def test_onevision_runs_in_libmtmd_only_with_llava_uhd_slices(tmp_path, checkpoints, photos):
    """The legacy mmproj loads and runs, but libmtmd lays the image out as llava-1.6 slices: more
    positions than OneVision's unpadded, pooled layout that mmedge and transformers use."""
    from benchmarks.baselines.legacy_mmproj import legacy_mmproj
    from benchmarks.baselines.llama_mtmd import mtmd_generate
    from mmedge.export.exporter import ExportConfig, export_bundle
    from mmedge.runtime.pipeline import GenerationParams, Pipeline, RuntimeOptions

    ckpt = checkpoints("onevision-siglip-qwen2")
    bundle = tmp_path / "bundle"
    export_bundle(ExportConfig(checkpoint=ckpt, output=bundle, llm="F32", verify=False))
    mmproj = legacy_mmproj(ckpt, tmp_path / "vision", LLAMA_CPP_SRC)
    image = photos["astronaut"].resize((640, 480))
    pipe = Pipeline(str(bundle), RuntimeOptions(threads=1))
    ours = pipe.generate([image], "Describe the picture.", GenerationParams(max_new_tokens=2, min_new_tokens=2))
    pipe.close()
    prompt = "<|im_start|>user\n<__media__>\nDescribe the picture.<|im_end|>\n<|im_start|>assistant\n"
    r = mtmd_generate(bundle / "llm.F32.gguf", mmproj, image, prompt, n_decode=4, threads=1, n_ctx=1024, reps=1)
    assert r["image_chunks"] > 1 and r["image_tokens"] == r["image_chunks"] * 16  # every slice 4x4 patches, unpooled
    assert r["prompt_positions"] != ours.stats.prompt_positions
