"""`mmedge bench`: the report's numbers hold together (schema, TTFT = its stages, rates = counts /
times, KV depth, per-tile times, ratios), the table, the plot, the CLI, refusals before any work,
a failing worker's error, and a worker that runs without torch."""
from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from mmedge.errors import BenchError, BenchWorkerError, MissingDependencyError

from .test_torch_free import IMPORT_BLOCKER

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "bench.schema.json"
REPS, MAX_TOKENS = 2, 4
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def settings(**kw):
    from mmedge.runtime.bench.settings import BenchSettings

    return BenchSettings(**{"reps": REPS, "warmup": 1, "max_tokens": MAX_TOKENS, **kw})


def validate(report: dict) -> None:
    import jsonschema

    jsonschema.validate(report, json.loads(SCHEMA_PATH.read_text()), cls=jsonschema.Draft202012Validator)


@pytest.fixture(scope="module")
def llava(bundles):
    return bundles("clip-llama-bpe")[0]


@pytest.fixture(scope="module")
def tiled(bundles):
    return bundles("next-clip-llama")[0]


@pytest.fixture(scope="module")
def report(llava, tiled):
    """One run over three bundles: the same LLaVA twice (so ratios are side by side), then a tiled
    LLaVA-NeXT (per-tile times), each in its own worker."""
    from mmedge.runtime.bench.runner import run_bench

    return run_bench([str(llava), str(llava), str(tiled)], settings(), progress=False)


def stats_objects(bundle: dict):
    for section in ("load", "stages", "rates"):
        for key, value in bundle[section].items():
            if value is not None:
                yield f"{section}.{key}", value


# -- the report --------------------------------------------------------------------------------
def test_report_validates_against_the_schema(report):
    validate(report)
    assert report["schema"] == "mmedge-bench" and report["schema_version"] == 1
    assert [b["label"] for b in report["bundles"]] == ["1: " + Path(report["bundles"][0]["bundle"]).name,
                                                      "2: " + Path(report["bundles"][1]["bundle"]).name,
                                                      "3: " + Path(report["bundles"][2]["bundle"]).name]


def test_every_time_and_rate_is_positive_finite_and_summarized(report):
    for bundle in report["bundles"]:
        for name, s in stats_objects(bundle):
            values = s["values"]
            assert all(math.isfinite(v) and v > 0 for v in values), (name, values)
            expected_n = 1 if name in ("load.cold_s", "load.import_s") else REPS
            assert s["n"] == len(values) == expected_n, name
            assert s["median"] == statistics.median(values) and s["mean"] == pytest.approx(statistics.fmean(values))
            assert (s["min"], s["max"]) == (min(values), max(values))
            assert s["p90"] == max(values)  # nearest rank: ceil(0.9 * 2) = 2nd of 2
        assert 0 < bundle["memory"]["peak_rss_mib"] < 4096


def test_ttft_measured_equals_the_sum_of_its_stages(report):
    """The stages are disjoint intervals inside the measured one (Pipeline.generate times them back to
    back), so the sum can never exceed it, on any machine. What it misses is the Python glue between
    their timers (a few statements, microseconds): in the best of the runs (a preemption in that glue
    hits one run, not all) it stays under 2 ms (or 2%); a stage left untimed (a tokenizer call, the
    image decode) would miss that much in every run."""
    for bundle in report["bundles"]:
        measured, summed = bundle["stages"]["ttft_s"]["values"], bundle["stages"]["ttft_sum_s"]["values"]
        gaps = [m - s for m, s in zip(measured, summed)]
        assert min(gaps) >= -1e-9, (bundle["label"], measured, summed)
        best = min(range(len(gaps)), key=gaps.__getitem__)
        assert gaps[best] <= max(2e-3, 0.02 * measured[best]), (bundle["label"], measured, summed)
        stage_sum = [sum(bundle["stages"][k]["values"][i] for k in
                         ("preprocess_s", "plan_s", "encode_s", "project_s", "assemble_s", "prefill_s", "first_sample_s"))
                     for i in range(REPS)]
        assert stage_sum == pytest.approx(summed, rel=1e-12)


def test_rates_are_counts_over_seconds(report):
    for bundle in report["bundles"]:
        d = bundle["decode"]
        assert (d["new_tokens"], d["steps"]) == (MAX_TOKENS, MAX_TOKENS - 1)
        decode_s, rate = bundle["stages"]["decode_s"]["values"], bundle["rates"]["decode_tokens_per_s"]["values"]
        assert rate == pytest.approx([(MAX_TOKENS - 1) / s for s in decode_s], rel=1e-12)
        positions = bundle["inputs"]["prompt_positions"]
        prefill_s, rate = bundle["stages"]["prefill_s"]["values"], bundle["rates"]["prefill_tokens_per_s"]["values"]
        assert rate == pytest.approx([positions / s for s in prefill_s], rel=1e-12)


def test_kv_depth_and_prompt_positions(report, pipeline):
    """The prompt positions are the plan's (computed here by the pipeline's own stage methods), the
    KV cache holds them when decoding starts, and every sampled token but the last is decoded."""
    from mmedge.runtime.bench.photo import photo_like
    from mmedge.runtime.bench.settings import DEFAULT_PROMPT

    plan = pipeline.plan(pipeline.format(DEFAULT_PROMPT, 1), pipeline.prepare_images([photo_like()]))
    llava = report["bundles"][0]
    assert llava["inputs"]["prompt_positions"] == plan.n_positions
    for bundle in report["bundles"]:
        d = bundle["decode"]
        assert d["kv_cells_start"] == bundle["inputs"]["prompt_positions"]
        assert d["kv_cells_end"] == d["kv_cells_start"] + MAX_TOKENS - 1


def test_encoder_times_per_call_and_per_tile(report, tiled):
    from mmedge.runtime.bench.photo import photo_like
    from mmedge.runtime.pipeline import Pipeline, RuntimeOptions

    llava, next_ = report["bundles"][0], report["bundles"][2]
    assert llava["inputs"]["media"][0]["encoder_input_shapes"] == [[1, 3, 48, 48]]  # the tiny CLIP's one 48-px view
    pipe = Pipeline(tiled, RuntimeOptions(n_ctx=1024))
    try:
        (prepared,) = pipe.prepare_images([photo_like()])
    finally:
        pipe.close()
    tiles = prepared.tiles.shape[0]
    assert tiles > 1  # anyres: the base view plus the grid's tiles
    medium = next_["inputs"]["media"][0]
    assert (medium["tiles"], medium["encoder_calls"], medium["rows"]) == (tiles, 1, prepared.n_rows)
    assert (medium["width"], medium["height"], medium["source"]) == (640, 480, "built-in")
    encode = next_["stages"]["encode_s"]["values"]
    assert next_["stages"]["encode_per_call_s"]["values"] == pytest.approx(encode, rel=1e-12)
    assert next_["stages"]["encode_per_tile_s"]["values"] == pytest.approx([e / tiles for e in encode], rel=1e-12)


def test_two_bundles_give_ratios_to_the_first(report):
    first, same, tiled = report["bundles"]
    assert all(r == 1.0 for r in first["ratios_to_first"].values())
    for bundle in (same, tiled):
        ratios = bundle["ratios_to_first"]
        assert ratios["stages.prefill_s"] == bundle["stages"]["prefill_s"]["median"] / first["stages"]["prefill_s"]["median"]
        assert ratios["rates.decode_tokens_per_s"] == (bundle["rates"]["decode_tokens_per_s"]["median"]
                                                       / first["rates"]["decode_tokens_per_s"]["median"])
        assert ratios["memory.peak_rss_mib"] == bundle["memory"]["peak_rss_mib"] / first["memory"]["peak_rss_mib"]
    # The same bundle: the same parts, positions and cold/warm structure, measured in its own process.
    assert same["parts"] == first["parts"] and same["inputs"] == first["inputs"]


def test_parts_threads_and_machine(report, llava):
    bundle = report["bundles"][0]
    assert [(p["role"], p["precision"], p["provider"]) for p in bundle["parts"]] == [
        ("vision_encoder", "fp32", "CPUExecutionProvider"), ("projector", "fp32", "CPUExecutionProvider"),
        ("llm", "F32", "llama.cpp CPU")]
    for p in bundle["parts"]:
        assert p["size_bytes"] == (llava / p["file"]).stat().st_size
    # threads 0 = the cores this process may run on (its affinity mask), not the machine's count.
    assert bundle["family"] == "llava" and bundle["threads"] == {"asked": 0, "effective": len(os.sched_getaffinity(0))}
    m = report["machine"]
    assert m["logical_cores"] == os.cpu_count() and 1 <= m["usable_cores"] <= m["logical_cores"]
    assert m["versions"]["onnxruntime"] == metadata.version("onnxruntime")
    assert m["versions"]["llama_cpp_python"] == metadata.version("llama_cpp_python")
    assert m["llama_cpp_system_info"].startswith("CPU :")
    assert report["settings"]["default_image"] is True and report["settings"]["images"] == []


def test_stats_rules():
    from mmedge.runtime.bench.stats import percentile_nearest_rank, summarize

    s = summarize([3.0, 1.0, 2.0, 10.0, 5.0])
    assert (s["median"], s["p90"], s["mean"], s["min"], s["max"], s["n"]) == (3.0, 10.0, 4.2, 1.0, 10.0, 5)
    assert s["sd"] == pytest.approx(math.sqrt(((3 - 4.2) ** 2 + 3.2 ** 2 + 2.2 ** 2 + 5.8 ** 2 + 0.8 ** 2) / 4))
    assert percentile_nearest_rank(range(1, 11), 90) == 9 and percentile_nearest_rank(range(1, 12), 90) == 10
    assert summarize([0.5])["sd"] == 0.0 and summarize([0.5])["p90"] == 0.5
    with pytest.raises(BenchError):
        summarize([])


# -- table and plot ----------------------------------------------------------------------------
def test_table_has_stages_as_rows_and_bundles_as_columns(report):
    from mmedge.runtime.bench.report import ROWS, format_number, format_table

    table = format_table(report)
    lines = table.splitlines()
    for title, _, _, unit in ROWS:
        assert any(line.startswith(f"{title} ({unit})") for line in lines), title
    header = next(line for line in lines if "1: " in line)
    assert header.index("1: ") < header.index("2: ") < header.index("3: ")
    prefill = next(line for line in lines if line.startswith("prefill (ms)"))
    cells = prefill.split()[2:]
    first_ms = report["bundles"][0]["stages"]["prefill_s"]["median"] * 1e3
    assert cells[0] == format_number(first_ms)  # the table's own rounding (4 significant digits, at least 3 decimals)
    ratio = report["bundles"][2]["ratios_to_first"]["stages.prefill_s"]
    assert cells[-1] == f"({ratio:.2f}x)"
    assert "1 / 1" in next(line for line in lines if line.startswith("encoder calls / tiles"))


def test_plot_is_a_real_png(report, tmp_path):
    from PIL import Image

    from mmedge.runtime.bench.plot import write_plot

    out = tmp_path / "bench.png"
    write_plot(report, out)
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 20_000
    with Image.open(out) as img:
        assert img.width >= 900 and img.height >= 500


def test_plot_without_matplotlib_is_a_named_error(monkeypatch):
    from mmedge.runtime.bench.plot import require_matplotlib

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"mmedge\[bench\]"):
        require_matplotlib()


# -- the CLI -----------------------------------------------------------------------------------
def test_cli_bench_end_to_end(llava, tmp_path):
    from mmedge.runtime.bench.photo import photo_like

    image = tmp_path / "photo.png"
    photo_like(seed=1, size=(200, 150)).save(image)
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "mmedge.cli", "bench", str(llava), "--image", str(image), "--reps", "2",
                           "--warmup", "0", "--max-tokens", "4", "--prompt", "What is this?", "--json", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TTFT, measured (ms)" in proc.stdout and "decode rate (tok/s)" in proc.stdout
    assert f"json written: {out}" in proc.stdout
    assert "step" not in proc.stderr  # --quiet: no progress bar
    report = json.loads(out.read_text())
    validate(report)
    assert report["settings"]["images"] == [str(image)] and report["settings"]["prompt"] == "What is this?"
    medium = report["bundles"][0]["inputs"]["media"][0]
    assert (medium["source"], medium["width"], medium["height"]) == (str(image), 200, 150)
    assert report["bundles"][0]["stages"]["ttft_s"]["n"] == 2


def test_cli_refuses_bad_reps_with_exit_2(llava):
    proc = subprocess.run([sys.executable, "-m", "mmedge.cli", "bench", str(llava), "--reps", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "mmedge bench: error: --reps must be in 1 .. 1000 (timed runs per bundle), got 0"


@pytest.fixture
def no_workers(monkeypatch):
    """Refusals must come before any measurement: starting a worker fails the test."""
    from mmedge.runtime.bench import runner

    def refuse(*args, **kwargs):
        raise AssertionError("a worker was started")

    monkeypatch.setattr(runner, "run_worker", refuse)


@pytest.mark.parametrize("extra, expected", [
    (["--warmup", "-1"], "--warmup must be in 0 .. 100"),
    (["--threads", "-1"], "--threads must be in 0 .. 1024"),
    (["--max-tokens", "1"], "--max-tokens must be in 2 .. 65536"),
    (["--image", "{tmp}/missing.png"], "missing.png: no such file"),
    (["--image", "{tmp}/notes.png"], "not an image file PIL can read"),
    (["--video", "{tmp}/clip.mp4"], "takes no videos"),
    (["--json", "{tmp}/nowhere/out.json"], "the folder"),
    (["--plot", "{tmp}"], "is a folder"),
])
def test_bad_arguments_are_refused_before_any_work(llava, tmp_path, capsys, no_workers, extra, expected):
    from mmedge.cli import main

    (tmp_path / "notes.png").write_text("not a picture")
    rc = main(["bench", str(llava), *(a.format(tmp=tmp_path) for a in extra)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("mmedge bench: error: ") and expected in err and "\n" not in err


def test_missing_bundle_is_refused(tmp_path, capsys, no_workers):
    from mmedge.cli import main

    rc = main(["bench", str(tmp_path / "no-bundle")])
    err = capsys.readouterr().err
    assert rc == 2 and "no-bundle: not a folder; expected a bundle folder" in err


def test_a_failing_worker_is_a_named_error(bundle_copy):
    """The parent reads only the manifest; the worker checks the hashes while loading, and its
    one-line error comes back named, with the bundle's path."""
    from mmedge.runtime.bench.runner import run_bench

    gguf = next(bundle_copy.glob("*.gguf"))
    data = bytearray(gguf.read_bytes())
    data[-1] ^= 0xFF
    gguf.write_bytes(bytes(data))
    with pytest.raises(BenchWorkerError, match=r"failed \(exit 2\): .*sha256") as e:
        run_bench([str(bundle_copy)], settings(reps=1, warmup=0), progress=False)
    assert str(bundle_copy) in str(e.value)


# -- torch-free --------------------------------------------------------------------------------
def test_worker_runs_without_torch(llava):
    script = IMPORT_BLOCKER + r'''
import json
from mmedge.runtime.bench.worker import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "torch_loaded": sorted({m.split(".")[0] for m in sys.modules} & set(FORBIDDEN))}))
'''
    proc = subprocess.run([sys.executable, "-c", script, str(llava), "--reps", "1", "--warmup", "0", "--max-tokens", "2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result_line, check_line = proc.stdout.strip().splitlines()[-2:]
    assert json.loads(check_line) == {"rc": 0, "torch_loaded": []}
    out = json.loads(result_line)
    assert set(out) == {"machine", "result"} and out["result"]["decode"]["new_tokens"] == 2


def test_a_video_bundle_samples_the_frames_asked(bundles, tmp_path):
    """A OneVision bundle with a video: --frames 3 of a 10-frame clip gives 3 frames, 3 tiles in
    one encoder call, 3 pooled grids + a newline row, and a valid report."""
    from mmedge.runtime.bench.runner import run_bench

    from ..video_helpers import source_frames, write_video

    clip = write_video(tmp_path / "clip.mov", "png", "rgb24", source_frames(10), rate=5)
    report = run_bench([str(bundles("onevision-siglip-qwen2")[0])], settings(video=str(clip), frames=3), progress=False)
    validate(report)
    (medium,) = [m for m in report["bundles"][0]["inputs"]["media"] if m["medium"] == "video"]
    assert (medium["frames"], medium["tiles"], medium["encoder_calls"]) == (3, 3, 1)
    assert medium["rows"] == 3 * 2 * 2 + 1  # the tiny tower's 4x4 grid pooled to 2x2, then image_newline
    assert report["settings"]["frames"] == 3 and report["settings"]["video_fps"] is None
    with pytest.raises(BenchError, match="not both"):
        settings(video=str(clip), frames=3, video_fps=1.0)
    with pytest.raises(BenchError, match="give --video too"):
        settings(frames=3)


def test_engine_time_and_orchestration(report):
    """The time inside llama_decode is part of prefill / decode, and mmedge's own time is the rest of
    the run: positive and smaller than the run, run by run."""
    for bundle in report["bundles"]:
        st = bundle["stages"]
        for i in range(len(st["ttft_s"]["values"])):
            run = st["ttft_s"]["values"][i] + st["decode_s"]["values"][i]
            assert 0 < st["llama_prefill_s"]["values"][i] <= st["prefill_s"]["values"][i]
            assert 0 < st["llama_decode_s"]["values"][i] <= st["decode_s"]["values"][i]
            engines = (st["encode_s"]["values"][i] + st["project_s"]["values"][i] + st["llama_prefill_s"]["values"][i]
                       + st["llama_decode_s"]["values"][i])
            assert st["orchestration_s"]["values"][i] == pytest.approx(run - engines, rel=1e-9, abs=1e-12)
            assert 0 < st["orchestration_s"]["values"][i] < run


def test_embedding_cache_runs_measure_a_repeated_image(tiled, report):
    """--embedding-cache: the warm-up fills the cache, every timed run's encoder call is a hit, the
    projector never runs, and the settings and table say so; without it no run hits."""
    from mmedge.runtime.bench.report import format_table
    from mmedge.runtime.bench.runner import run_bench

    cached = run_bench([str(tiled)], settings(embedding_cache=True), progress=False)
    validate(cached)
    bundle = cached["bundles"][0]
    assert cached["settings"]["embedding_cache"] is True
    assert bundle["inputs"]["embedding_cache_hits"] == [bundle["inputs"]["encoder_calls"]] * REPS
    assert bundle["stages"]["project_s"]["values"] == [0.0] * REPS
    uncached = report["bundles"][2]
    assert uncached["inputs"]["embedding_cache_hits"] == [0] * REPS and report["settings"]["embedding_cache"] is False
    # The same prompt positions and tokens count either way: only the encoder's work is skipped.
    assert bundle["inputs"]["prompt_positions"] == uncached["inputs"]["prompt_positions"]
    table = format_table(cached)
    hits = "/".join([str(bundle["inputs"]["encoder_calls"])] * REPS)
    assert "embedding cache hits per run" in table and hits in table and "--embedding-cache: the warm-up filled" in table
