"""benchmarks.encoder_options on a tiny bundle: every variant computes what the runtime computes
(merged graph, per-tile calls, other session options), the other bundle is compared, and the
results are written with positive times."""
from __future__ import annotations

import json


def test_variants_agree_and_results_are_written(bundles, tmp_path):
    from benchmarks.encoder_options import main

    fp32, _ = bundles("clip-llama-bpe")
    int8, _ = bundles("clip-llama-bpe", "int8", "int8", "F32")
    out = tmp_path / "eo"
    assert main([str(fp32), "--compare", f"int8={int8}", "--tiles", "2", "--reps", "2", "--out", str(out)]) == 0
    report = json.loads((out / "encoder_options.json").read_text())
    rows = {r["variant"]: r for r in report["variants"]}
    assert list(rows) == ["runtime", "per-tile", "merged", "no-spin", "basic-opt", "int8", "cache-lookup"]
    for name in ("per-tile", "merged", "no-spin", "basic-opt"):
        assert rows[name]["max_abs_diff"] < 1e-4 and rows[name]["cosine"] > 0.99999, name
    assert rows["runtime"]["max_abs_diff"] == 0.0 and rows["runtime"]["ratio_to_runtime"] == 1.0
    # Quantized, still close (random normal pixels: further from the photos verification measures on).
    assert 1e-4 < rows["int8"]["max_abs_diff"] and 0.9 < rows["int8"]["cosine"] < 1.0
    assert all(r["per_tile_s"] > 0 and len(r["values"]) >= 2 for r in rows.values())
    assert report["tile_shape"] == [3, 48, 48] and report["tiles"] == 2
    assert "| merged |" in (out / "encoder_options.md").read_text()
