"""What every tiny test model measures at every precision, through `mmedge export`'s own verification.

    python -m benchmarks.precision_table [--presets a,b] [--out benchmarks/results/<UTC date>-<machine id>-precision/]

For each tiny preset (`mmedge.export.tiny`, weights the same on every CPU) and each precision set
(fp32 + F32, fp32 + F16, int8 + int8 + Q8_0, int4 + int4 + Q4_0, int8-static + fp32 + F32 where the
family takes static calibration, int4 + int4 + Q4_K_M on the K-quant preset), the bundle is
exported with `--allow-below-floor` and its verification report read: encoder and projector cosine,
the LLM's teacher-forced top-1 and largest logit difference, greedy tokens equal to transformers
(quantized types are kept with --allow-quant-fallback where the tiny model's rows do not fill the
type's blocks, and marked).
Writes `precision.json` (the reports' numbers and the CPU they were measured on) and `precision.md`
(the table the README's floors section quotes). About 5 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path

# (label, encoder, projector, llm)
PRECISION_SETS = (
    ("fp32/F32", "fp32", "fp32", "F32"),
    ("fp32/F16", "fp32", "fp32", "F16"),
    ("int8/Q8_0", "int8", "int8", "Q8_0"),
    ("int4/Q4_0", "int4", "int4", "Q4_0"),
    ("int8-static/F32", "int8-static", "fp32", "F32"),
)
KQUANT_SET = ("int4/Q4_K_M", "int4", "int4", "Q4_K_M")
KQUANT_PRESETS = ("clip-llama-spm-256",)


def measure(preset: str, checkpoint: Path, sets, work: Path, log) -> dict:
    from mmedge.errors import MmedgeError
    from mmedge.export.exporter import ExportConfig, export_bundle

    rows = {}
    for label, encoder, projector, llm in sets:
        try:
            manifest = export_bundle(ExportConfig(checkpoint=checkpoint, output=work / label.replace("/", "-"),
                                                  encoder=encoder, projector=projector, llm=llm, allow_below_floor=True,
                                                  allow_quant_fallback=True))
        except MmedgeError as e:  # a precision this family cannot take (e.g. static int8 of a multi-input encoder)
            rows[label] = {"refused": str(e)}
            log(f"[{preset}] {label}: refused ({type(e).__name__})")
            continue
        v = manifest.verification
        roles = manifest.tensor_roles
        rows[label] = {
            "encoder_cosine": v[roles[0]]["cosine"], "projector_cosine": v[roles[1]]["cosine"],
            "llm_top1": v["llm"]["top1_agreement"], "llm_max_abs_diff": v["llm"]["all_positions_max_abs_diff"],
            "llm_largest_logit": v["llm"]["largest_logit"], "greedy_equal": v["greedy_tokens_equal"],
            "greedy_total": v["greedy_tokens_total"], "passed": {p: v[p]["passed"] for p in (*roles, "llm")},
            "llm_fallback_tensors": len(manifest.parts["llm"].details.get("fallback_tensors", {})),
        }
        log(f"[{preset}] {label}: " + json.dumps({k: rows[label][k] for k in ("encoder_cosine", "llm_top1")}))
    return rows


def markdown(results: dict, machine: dict) -> str:
    labels = [s[0] for s in (*PRECISION_SETS, KQUANT_SET)]
    lines = [f"Measured on {machine['model']} ({machine['architecture']}; int8 dot {machine['int8_dot']}; "
             f"{' '.join(machine['simd'])}), every bundle through `mmedge export`'s verification.", "",
             "encoder cosine / projector cosine / LLM top-1 (or, for F32, the largest logit difference and the",
             "greedy tokens equal); `*`: llama.cpp wrote some tensors in other types (rows not multiples of the",
             "type's block, kept with --allow-quant-fallback):", "",
             "| preset | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for preset, rows in results.items():
        cells = []
        for label in labels:
            r = rows.get(label)
            if r is None:
                cells.append("")
            elif "refused" in r:
                cells.append("refused")
            elif label.endswith("F32"):
                cells.append(f"{r['encoder_cosine']:.5f} / {r['projector_cosine']:.5f} / "
                             f"{r['llm_max_abs_diff']:.2g} ({r['greedy_equal']}/{r['greedy_total']})")
            else:
                fallback = "*" if r.get("llm_fallback_tensors") else ""
                cells.append(f"{r['encoder_cosine']:.4f} / {r['projector_cosine']:.4f} / {r['llm_top1']:.3f}{fallback}")
        lines.append(f"| `{preset}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from mmedge.cpu import cpu_facts
    from mmedge.export.tiny import TINY_BUILDERS, build_tiny

    from .run_suite import machine_id

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default=",".join(sorted(TINY_BUILDERS)))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    out = args.out or Path(__file__).parent / "results" / f"{stamp}-{machine_id()}-precision"
    out.mkdir(parents=True, exist_ok=True)
    machine = cpu_facts().to_dict()
    results = {}
    with tempfile.TemporaryDirectory(prefix="mmedge-precision-") as tmp:
        for preset in args.presets.split(","):
            work = Path(tmp) / preset
            checkpoint = build_tiny(preset, work / "checkpoint", seed=0)
            sets = (*PRECISION_SETS, KQUANT_SET) if preset in KQUANT_PRESETS else PRECISION_SETS
            results[preset] = measure(preset, checkpoint, sets, work, lambda line: print(line, flush=True))
    (out / "precision.json").write_text(json.dumps({"machine": machine, "results": results}, indent=1) + "\n")
    (out / "precision.md").write_text(markdown(results, machine))
    print(f"wrote {out}/precision.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
