"""The suite driver's pure parts: the target ratios, the merge of rounds, the tables, and the
results.json structure from a real (tiny, text-only baselines) run."""
from __future__ import annotations

import json

import pytest

from benchmarks import run_suite


def _stat(*values):
    from mmedge.runtime.bench.stats import summarize

    return summarize(values)


def _entry(**stages):
    base = {"preprocess_s": 0.010, "plan_s": 0.001, "encode_s": 1.0, "project_s": 0.1, "assemble_s": 0.001,
            "prefill_s": 0.5, "first_sample_s": 0.001, "ttft_s": 1.62, "decode_s": 0.30,
            "llama_prefill_s": 0.48, "llama_decode_s": 0.28, "orchestration_s": 1.92 - (1.0 + 0.1 + 0.48 + 0.28)}
    base.update(stages)
    return {"stages": {k: _stat(v) for k, v in base.items()},
            "rates": {"decode_tokens_per_s": _stat(50.0), "prefill_tokens_per_s": _stat(200.0)},
            "decode": {"steps": 15, "new_tokens": 16, "kv_cells_start": 100, "kv_cells_end": 115},
            "inputs": {"prompt_positions": 100},
            "parts": [{"role": "vision_encoder", "precision": "fp32"}, {"role": "projector", "precision": "fp32"},
                      {"role": "llm", "precision": "Q8_0"}],
            "load": {"cold_s": _stat(1.0), "warm_s": _stat(0.5)}, "memory": {"peak_rss_mib": 100.0}}


BASELINES = {
    "raw_llama": {"decode_tokens_per_s": 52.0, "decode_median_s": 0.019, "n_prompt": 100, "prefill_s": 0.45,
                  "decode_total_s": 0.29, "n_decode": 15},
    "libmtmd": {"preprocess_s": 0.02, "encode_s": 1.6, "prefill_s": 0.5, "first_token_s": 0.0, "decode_s": 0.29,
                "decode_tokens_per_s": 52.0, "prompt_positions": 100},
    "hf_eager": {"preprocess_s": 0.02, "encode_s": 2.2, "prefill_s": 0.6, "decode_s": 1.0, "decode_step_median_s": 0.06,
                 "decode_tokens_per_s": 15.0, "prompt_positions": 100, "attn_implementation": "sdpa"},
    "bandwidth": {"bound_tokens_per_s": 100.0, "bandwidth_GBps": 14.0, "bytes_per_token": 140e6, "n_ctx": 115},
    "skipped": {},
}


def test_target_ratios_on_synthetic_numbers():
    t = run_suite.compute_targets(_entry(), BASELINES)
    assert list(t) == [k for k, *_ in run_suite.TARGETS]
    assert t["ttft_vs_libmtmd"]["value"] == pytest.approx(1.62 / 2.12)
    assert t["ttft_vs_libmtmd"]["met"] is False
    assert t["decode_vs_raw_llama"]["value"] == pytest.approx(50 / 52)
    assert t["decode_vs_raw_llama"]["met"] is True
    inside = 1.0 + 0.1 + 0.48 + 0.28  # the engines' own time, as the runtime measured it
    assert t["orchestration_share"]["value"] == pytest.approx((1.92 - inside) / 1.92)
    assert t["encoder_speedup_vs_hf"]["value"] == pytest.approx(2.2 / 1.1)
    assert t["encoder_speedup_vs_hf"]["met"] is True and "int8 bundle" in t["encoder_speedup_vs_hf"]["note"]
    assert t["decode_vs_bandwidth_bound"]["value"] == pytest.approx(0.5)
    assert t["decode_vs_bandwidth_bound"]["met"] is False


def test_missing_baselines_give_no_verdict():
    t = run_suite.compute_targets(_entry(), {"skipped": {}})
    # mmedge's own share needs no baseline; every ratio against a baseline is undefined without it.
    assert all(v["value"] is None and v["met"] is None for k, v in t.items() if k != "orchestration_share")
    assert t["orchestration_share"]["value"] == pytest.approx(0.06 / 1.92)  # 3.1%: above the 2% target
    assert t["orchestration_share"]["met"] is False


def test_merge_rounds_pools_the_values():
    a, b = _entry(encode_s=1.0), _entry(encode_s=3.0)
    merged = run_suite.merge_rounds([a, b])
    assert merged["stages"]["encode_s"]["values"] == [1.0, 3.0]
    assert merged["stages"]["encode_s"]["median"] == 2.0 and merged["stages"]["encode_s"]["n"] == 2
    assert merged["load"]["warm_s"]["n"] == 2


def test_markdown_tables_from_synthetic_report():
    entry = {**_entry(), "suite_name": "x", "bundle": "/b", "baselines": BASELINES}
    entry["targets"] = run_suite.compute_targets(entry, BASELINES)
    report = {"created": "now", "machine": {"cpu": "cpu", "logical_cores": 2},
              "settings": {"threads": 1, "reps": 1, "max_tokens": 16, "images": ["i.png"], "prompt": "p"},
              "bundles": [entry]}
    md = run_suite.results_markdown(report)
    assert "| mmedge |" in md and "libmtmd" in md and "transformers eager (sdpa)" in md and "**missed**" in md


def test_results_json_structure_on_a_tiny_bundle(bundles, tmp_path):
    bundle = bundles("smolvlm-llama")[0]
    out = tmp_path / "res"
    assert run_suite.main(["--bundle", f"tiny={bundle}", "--reps", "1", "--max-tokens", "4", "--bandwidth-mib", "16",
                           "--no-hf", "--no-mtmd", "--image", str(_image(tmp_path)), "--out", str(out)]) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["schema"] == "mmedge-bench" and report["settings"]["reps"] == 1
    (entry,) = report["bundles"]
    assert entry["suite_name"] == "tiny"
    assert set(entry["baselines"]) >= {"raw_llama", "bandwidth", "skipped"}
    assert set(entry["baselines"]["skipped"]) == {"hf_eager", "libmtmd"}
    assert entry["baselines"]["raw_llama"]["n_prompt"] == entry["inputs"]["prompt_positions"]
    assert set(entry["targets"]) == {k for k, *_ in run_suite.TARGETS}
    assert entry["targets"]["decode_vs_raw_llama"]["value"] > 0
    assert entry["targets"]["ttft_vs_libmtmd"]["met"] is None
    for name in ("results.md", "stages.png", "machine.txt"):
        assert (out / name).stat().st_size > 0
    assert "load average" in (out / "machine.txt").read_text()


def _image(tmp_path):
    from PIL import Image

    path = tmp_path / "img.png"
    Image.new("RGB", (96, 48), (120, 60, 30)).save(path)
    return path
