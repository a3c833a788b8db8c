"""The comparison suite's written results: results.md (engine and target tables) and machine.txt."""
from __future__ import annotations

import json


def med(stat) -> float | None:
    """The median of a stats object (or a plain number); None when undefined."""
    if stat is None:
        return None
    return stat["median"] if isinstance(stat, dict) else float(stat)



def _ms(x):
    return "–" if x is None else f"{x * 1e3:.0f}"


def stage_rows(entry: dict) -> list[list[str]]:
    """Engine rows: preprocess, encode(+project), prefill, TTFT, decode ms/token, tok/s, positions (ms)."""
    st, b = entry["stages"], entry["baselines"]
    steps = entry["decode"]["steps"]
    rows = [["mmedge", _ms(med(st["preprocess_s"]) + med(st["plan_s"])),
             _ms(med(st["encode_s"]) + med(st["project_s"]) + med(st["assemble_s"])), _ms(med(st["prefill_s"])),
             _ms(med(st["ttft_s"])), f"{med(st['decode_s']) / steps * 1e3:.1f}",
             f"{med(entry['rates']['decode_tokens_per_s']):.1f}", str(entry["inputs"]["prompt_positions"])]]
    if "libmtmd" in b:
        m = b["libmtmd"]
        rows.append(["libmtmd (llama.cpp)", _ms(m["preprocess_s"]), _ms(m["encode_s"]), _ms(m["prefill_s"]),
                     _ms(m["preprocess_s"] + m["encode_s"] + m["prefill_s"] + m["first_token_s"]),
                     f"{m['decode_s'] / steps * 1e3:.1f}", f"{m['decode_tokens_per_s']:.1f}", str(m["prompt_positions"])])
    if "hf_eager" in b:
        h = b["hf_eager"]
        rows.append([f"transformers eager ({h['attn_implementation']})", _ms(h["preprocess_s"]), _ms(h["encode_s"]),
                     _ms(h["prefill_s"]), _ms(h["preprocess_s"] + h["encode_s"] + h["prefill_s"]),
                     f"{h['decode_step_median_s'] * 1e3:.1f}", f"{h['decode_tokens_per_s']:.1f}",
                     str(h["prompt_positions"])])
    r = b["raw_llama"]
    rows.append(["raw llama.cpp (text ids)", "–", "–", _ms(r["prefill_s"]), "–",
                 f"{r['decode_total_s'] / r['n_decode'] * 1e3:.1f}", f"{r['decode_tokens_per_s']:.1f}", str(r["n_prompt"])])
    bw = b["bandwidth"]
    rows.append([f"bandwidth bound ({bw['bandwidth_GBps']:.1f} GB/s)", "–", "–", "–", "–",
                 f"{1e3 / bw['bound_tokens_per_s']:.1f}", f"{bw['bound_tokens_per_s']:.1f}", str(bw["n_ctx"])])
    return rows


def target_rows(entry: dict) -> list[list[str]]:
    rows = []
    for t in entry["targets"].values():
        value = "–" if t["value"] is None else f"{t['value']:.3f}"
        met = {True: "**met**", False: "**missed**", None: "not measured"}[t["met"]]
        rows.append([t["what"], value, f"{t['direction']} {t['target']}", met])
    return rows


def _table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def results_markdown(report: dict) -> str:
    s = report["settings"]
    parts = [f"# mmedge comparison suite, {report['created']}", "",
             f"Machine: {report['machine']['cpu']}, {report['machine']['logical_cores']} cores; threads {s['threads']}; "
             f"{s['reps']} interleaved rounds (medians); {s['max_tokens']} new tokens; image {s['images']}; "
             f"prompt {s['prompt']!r}. Times in ms.", ""]
    for entry in report["bundles"]:
        parts += [f"## {entry['suite_name']} ({entry['bundle']})", "",
                  _table(["engine", "preprocess (+plan)", "encode (+project)", "prefill", "TTFT", "decode ms/token",
                          "decode tok/s", "positions"], stage_rows(entry)), "",
                  _table(["target", "value", "target", "verdict"], target_rows(entry)), ""]
        for k, reason in entry["baselines"]["skipped"].items():
            parts.append(f"- {k} skipped: {reason}")
        parts += ["", f"Orchestration: {entry['targets']['orchestration_share']['note']}", "",
                  f"Encoder: {entry['targets']['encoder_speedup_vs_hf']['note']}", ""]
    parts.append("![stages](stages.png)")
    return "\n".join(parts) + "\n"


def machine_text(report: dict, loadavg: list) -> str:
    m = report["machine"]
    features = m.get("cpu_features") or {}  # results written before it was recorded lack it
    lines = [f"cpu: {m['cpu']}", f"architecture: {m['architecture']}",
             f"cpu features: {' '.join(features.get('simd', [])) or 'not recorded'}; "
             f"int8 dot: {features.get('int8_dot', 'not recorded')}", f"logical cores: {m['logical_cores']}",
             f"usable cores: {m['usable_cores']}", f"memory total: {m['memory_total_mib']} MiB",
             f"os: {m['os']} {m['kernel']}", f"python: {m['python']}", f"versions: {json.dumps(m['versions'])}",
             f"load average (1, 5, 15 min) at the start: {loadavg[0]}"]
    lines += [f"load average after round {i}: {la}" for i, la in enumerate(loadavg[1:], 1)]
    lines.append(f"llama.cpp system info: {m['llama_cpp_system_info']}")
    return "\n".join(lines) + "\n"
