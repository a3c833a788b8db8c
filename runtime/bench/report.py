"""The bench report: the JSON document (docs/bench.schema.json, described in docs/BENCH.md) and
the terminal table (stages as rows, bundles as columns, ratios to the first bundle)."""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

from mmedge.errors import BenchError

from .settings import BenchSettings

SCHEMA = "mmedge-bench"
SCHEMA_VERSION = 1

# (row title, section, key, unit) of every measured quantity the table shows and ratios cover.
ROWS = (
    ("load, cold", "load", "cold_s", "ms"),
    ("load, warm", "load", "warm_s", "ms"),
    ("preprocess", "stages", "preprocess_s", "ms"),
    ("plan (prompt, tokens)", "stages", "plan_s", "ms"),
    ("encode", "stages", "encode_s", "ms"),
    ("  per call", "stages", "encode_per_call_s", "ms"),
    ("  per tile", "stages", "encode_per_tile_s", "ms"),
    ("project", "stages", "project_s", "ms"),
    ("assemble", "stages", "assemble_s", "ms"),
    ("prefill", "stages", "prefill_s", "ms"),
    ("first sample", "stages", "first_sample_s", "ms"),
    ("TTFT, sum of stages", "stages", "ttft_sum_s", "ms"),
    ("TTFT, measured", "stages", "ttft_s", "ms"),
    ("decode", "stages", "decode_s", "ms"),
    ("  inside llama_decode: prefill", "stages", "llama_prefill_s", "ms"),
    ("  inside llama_decode: decode", "stages", "llama_decode_s", "ms"),
    ("mmedge's own (run - engines)", "stages", "orchestration_s", "ms"),
    ("prefill rate", "rates", "prefill_tokens_per_s", "tok/s"),
    ("decode rate", "rates", "decode_tokens_per_s", "tok/s"),
    ("peak RSS", "memory", "peak_rss_mib", "MiB"),
)


def median_of(bundle: dict, section: str, key: str) -> float | None:
    """The median of a measured quantity (a single value for peak RSS); None when undefined."""
    value = bundle[section].get(key)
    return value["median"] if isinstance(value, dict) else value


def ratios_to_first(bundle: dict, first: dict) -> dict[str, float | None]:
    """median / the first bundle's median, per quantity ("section.key"); None when undefined."""
    out = {}
    for _, section, key, _ in ROWS:
        a, b = median_of(bundle, section, key), median_of(first, section, key)
        out[f"{section}.{key}"] = a / b if a is not None and b else None
    return out


def build_report(machines: list[dict], settings: BenchSettings, results: list[dict], remote: str | None = None) -> dict:
    """The schema's document: bundles in the order given, labelled "1: name", "2: name", ...; a
    bundle measured on another machine than the first (remote runs) carries its own `machine`."""
    bundles = []
    for i, (machine, result) in enumerate(zip(machines, results)):
        entry = {"label": f"{i + 1}: {Path(result['bundle']).name}", **result}
        if machine != machines[0]:
            entry["machine"] = machine
        bundles.append(entry)
    for entry in bundles:
        entry["ratios_to_first"] = ratios_to_first(entry, bundles[0])
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machines[0],
        "settings": {**settings.to_dict(), "remote": remote},
        "bundles": bundles,
    }


def write_json(report: dict, path: str | Path) -> None:
    try:
        Path(path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    except OSError as e:
        raise BenchError(f"--json {path}: cannot write it ({e.strerror}); choose a path you may write") from None


def precision_label(bundle: dict) -> str:
    """"enc fp32, proj fp32, llm Q8_0" from the parts that ran."""
    short = {"vision_encoder": "enc", "projector": "proj", "llm": "llm"}
    return ", ".join(f"{short.get(p['role'], p['role'])} {p['precision']}" for p in bundle["parts"])


def format_number(x: float) -> str:
    """About four significant digits, never scientific notation."""
    if not math.isfinite(x):
        return str(x)
    for limit, fmt in ((1000, "{:.0f}"), (100, "{:.1f}"), (10, "{:.2f}")):
        if abs(x) >= limit:
            return fmt.format(x)
    return "{:.3f}".format(x)


# (row title, what) of the facts listed under the measured rows (no ratios).
FACTS = (
    ("prompt positions", lambda b: str(b["inputs"]["prompt_positions"])),
    ("encoder calls / tiles", lambda b: f"{b['inputs']['encoder_calls']} / {b['inputs']['tiles'] or '-'}"),
    ("KV cells, decode start > end", lambda b: f"{b['decode']['kv_cells_start']} > {b['decode']['kv_cells_end']}"),
    ("threads asked > used", lambda b: f"{b['threads']['asked']} > {b['threads']['effective']}"),
    ("embedding cache hits per run", lambda b: "/".join(map(str, b["inputs"]["embedding_cache_hits"]))),
    ("ran on", lambda b: " + ".join(dict.fromkeys(p["provider"].replace("ExecutionProvider", " EP") for p in b["parts"]))),
)


def format_table(report: dict) -> str:
    bundles = report["bundles"]
    rows: list[tuple[str, list[str]]] = [("", [b["label"] for b in bundles]), ("", [precision_label(b) for b in bundles])]
    for name, section, key, unit in ROWS:
        scale = 1e3 if unit == "ms" else 1.0
        cells = []
        for b in bundles:
            value = median_of(b, section, key)
            cell = "-" if value is None else format_number(value * scale)
            ratio = b["ratios_to_first"].get(f"{section}.{key}")
            if len(bundles) > 1 and b is not bundles[0] and ratio is not None:
                cell += f" ({ratio:.2f}x)"
            cells.append(cell)
        rows.append((f"{name} ({unit})", cells))
    rows += [(name, [fact(b) for b in bundles]) for name, fact in FACTS]
    title = max(len(name) for name, _ in rows) + 2
    width = max(len(cell) for _, cells in rows for cell in cells) + 3
    lines = [_header(report), ""]
    lines += [f"{name:<{title}}" + "".join(cell.rjust(width) for cell in cells) for name, cells in rows]
    s = report["settings"]
    lines += ["", f"medians of {s['reps']} timed runs after {s['warmup']} warm-up, {s['max_tokens']} new tokens each "
                  f"(decode: {s['max_tokens'] - 1} steps); load, cold: the first load in the bundle's own process; "
                  "p90, mean, sd, min, max in --json."]
    if s.get("embedding_cache"):
        lines.append("--embedding-cache: the warm-up filled the image-embedding cache; runs that hit it skipped the "
                     "encoder and projector (their encode time is the cache lookup).")
    if len(bundles) > 1:
        lines.append("(N.NNx) = median / bundle 1's median, measured in this same run (the machine may be shared and "
                     "noisy: only side-by-side ratios mean much); for tok/s higher is faster.")
    return "\n".join(lines)


def _header(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    inputs = ", ".join(s["images"]) if s["images"] else ("" if s["video"] else "the built-in 640x480 photo-like image")
    if s["video"]:
        inputs = ", ".join(filter(None, [inputs, f"video {s['video']}"]))
    return (f"mmedge bench on {m['cpu']} ({m['architecture']}, {m['usable_cores']} of {m['logical_cores']} cores), "
            f"{m['os']} {m['kernel']}, {m['python']}, mmedge {m['versions']['mmedge']}, "
            f"llama-cpp-python {m['versions']['llama_cpp_python']}, onnxruntime {m['versions']['onnxruntime']}\n"
            f"llama.cpp: {m['llama_cpp_system_info']}\n"
            f"input: {inputs}; prompt {s['prompt']!r}")
