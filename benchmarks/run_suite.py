"""The comparison suite: mmedge and its baselines side by side, in one run, on the same input and threads.

    python -m benchmarks.run_suite --bundle NAME=PATH [--bundle NAME=PATH ...]
        [--checkpoint [NAME=]PATH] [--mmproj [NAME=]PATH] [--threads 1] [--reps 2] [--max-tokens 16]
        [--image PATH] [--out benchmarks/results/<UTC date>-<machine id>/] [--no-hf] [--no-mtmd]

Per bundle, `reps` rounds, each round running the engines one after the other (A B C D A B C D ...):
mmedge (`mmedge.runtime.bench.runner.run_bench`: its own worker process, 1 warm-up + 1 timed run per
round), raw llama.cpp decode on the bundle's GGUF at mmedge's prompt length, libmtmd (when an mmproj
is given for the bundle), transformers eager (when a checkpoint is given). libmtmd and transformers
are loaded once in this process and warmed up once before the first round. The memory bandwidth is
measured once at the start. Then the target ratios are printed (never asserted) and written with
the tables (`results.json`, `results.md`, `stages.png`, `machine.txt`; see benchmarks/results/README.md).

Without --image, the input is the bench's built-in photo-like image resized to 1024x256: Idefics3
(SmolVLM) scales every image to a longest edge of 2048 and tiles it by 512, so a 4:1 image is the
cheapest real input (4 tiles + the global view); a 512x512 image would be 16 + 1 tiles.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from .suite_report import machine_text, med as _med, results_markdown, target_rows

DEFAULT_IMAGE_SIZE = (1024, 256)
STAT_SECTIONS = ("stages", "rates")

# (key, what, target, direction): direction "<=" means value <= target meets it.
TARGETS = (
    ("ttft_vs_libmtmd", "TTFT mmedge / TTFT libmtmd", 0.5, "<="),
    ("decode_vs_raw_llama", "decode tok/s mmedge / raw llama.cpp", 0.95, ">="),
    ("orchestration_share", "mmedge orchestration / end-to-end", 0.02, "<="),
    ("encoder_speedup_vs_hf", "encoder time transformers eager / mmedge (encode+project)", 2.0, ">="),
    ("decode_vs_bandwidth_bound", "decode tok/s mmedge / bandwidth bound", 0.60, ">="),
)

ORCHESTRATION_DEFINITION = (
    "end-to-end = TTFT + decode time (mmedge's Pipeline.generate); inside = encode_s + project_s (the "
    "onnxruntime/ExecuTorch calls) + the time inside llama_decode during prefill and decode (timed around each "
    "call by the runtime: stages.llama_prefill_s, stages.llama_decode_s); orchestration = end-to-end - inside "
    "(stages.orchestration_s, run by run), i.e. preprocessing, planning, assembling, sampling, logits copies "
    "and Python glue.")


def _verdict(value, target, direction):
    if value is None:
        return None
    return value <= target if direction == "<=" else value >= target


def compute_targets(mmedge: dict, baselines: dict) -> dict:
    """The target ratios of one bundle. `mmedge` is one `bundles[]` entry of the mmedge bench report;
    `baselines` holds the medians of the baselines that ran (`raw_llama`, `libmtmd`, `hf_eager`,
    `bandwidth`), each optional. Returns {key: {what, value, target, direction, met, note}}."""
    st, rates = mmedge["stages"], mmedge["rates"]
    raw, mtmd, hf, bw = (baselines.get(k) for k in ("raw_llama", "libmtmd", "hf_eager", "bandwidth"))
    values: dict[str, tuple[float | None, str]] = {}

    if mtmd:
        mtmd_ttft = mtmd["preprocess_s"] + mtmd["encode_s"] + mtmd["prefill_s"] + mtmd["first_token_s"]
        values["ttft_vs_libmtmd"] = (_med(st["ttft_s"]) / mtmd_ttft,
                                     f"libmtmd TTFT = preprocess + encode + prefill + first sample = {mtmd_ttft:.3f} s; "
                                     f"prompt positions {mtmd.get('prompt_positions')} vs mmedge "
                                     f"{mmedge['inputs']['prompt_positions']}")
    else:
        values["ttft_vs_libmtmd"] = (None, "libmtmd did not run for this bundle")

    if raw:
        values["decode_vs_raw_llama"] = (_med(rates["decode_tokens_per_s"]) / raw["decode_tokens_per_s"],
                                         f"raw llama.cpp {raw['decode_tokens_per_s']:.2f} tok/s at "
                                         f"{raw['n_prompt']} prompt positions")
    else:
        values["decode_vs_raw_llama"] = (None, "raw llama.cpp did not run")
    e2e = _med(st["ttft_s"]) + _med(st["decode_s"])
    own = _med(st.get("orchestration_s"))
    if own is not None:
        values["orchestration_share"] = (own / e2e, f"{own * 1e3:.1f} ms of {e2e * 1e3:.1f} ms; of which preprocess "
                                         f"{_med(st['preprocess_s']) * 1e3:.1f} ms. " + ORCHESTRATION_DEFINITION)
    else:  # a report from before the runtime timed llama_decode
        values["orchestration_share"] = (None, "the report has no stages.orchestration_s (an older mmedge)")

    if hf:
        ours = _med(st["encode_s"]) + _med(st["project_s"])
        precisions = {p["role"]: p["precision"] for p in mmedge.get("parts", [])}
        enc_prec = next((v for k, v in precisions.items() if k not in ("llm", "projector")), "?")
        note = f"transformers {hf['encode_s']:.3f} s vs mmedge {ours:.3f} s; mmedge encoder precision {enc_prec}"
        if enc_prec != "int8":
            note += " (the target is for an int8 encoder: this is the fp32 ratio; the int8 one needs an int8 bundle)"
        values["encoder_speedup_vs_hf"] = (hf["encode_s"] / ours, note)
    else:
        values["encoder_speedup_vs_hf"] = (None, "transformers eager did not run (no --checkpoint)")

    if bw:
        values["decode_vs_bandwidth_bound"] = (_med(rates["decode_tokens_per_s"]) / bw["bound_tokens_per_s"],
                                               f"bound {bw['bound_tokens_per_s']:.1f} tok/s = {bw['bandwidth_GBps']:.1f} "
                                               f"GB/s / {bw['bytes_per_token'] / 1e6:.1f} MB per token at "
                                               f"{bw['n_ctx']} KV cells")
    else:
        values["decode_vs_bandwidth_bound"] = (None, "bandwidth not measured")

    out = {}
    for key, what, target, direction in TARGETS:
        value, note = values[key]
        out[key] = {"what": what, "value": value, "target": target, "direction": direction,
                    "met": _verdict(value, target, direction), "note": note}
    return out


def merge_rounds(entries: list[dict]) -> dict:
    """One `bundles[]` entry from several single-run entries of the same bundle: the statistics of
    `stages`, `rates` and `load.warm_s` rebuilt over every round's values."""
    from mmedge.runtime.bench.stats import summarize

    merged = json.loads(json.dumps(entries[0]))
    for section in STAT_SECTIONS:
        for key, stat in merged[section].items():
            if isinstance(stat, dict) and "values" in stat:
                merged[section][key] = summarize([v for e in entries for v in e[section][key]["values"]])
    for key in ("warm_s", "cold_s"):
        merged["load"][key] = summarize([v for e in entries for v in e["load"][key]["values"]])
    merged["memory"]["peak_rss_mib"] = max(e["memory"]["peak_rss_mib"] for e in entries)
    return merged


def _median_of(runs: list[dict], keys) -> dict:
    out = dict(runs[-1])
    for k in keys:
        out[k] = statistics.median(r[k] for r in runs)
    out["values"] = {k: [r[k] for r in runs] for k in keys}
    out["n"] = len(runs)
    return out


def _parse_named(items: list[str], names: list[str], option: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = names[0], item
        if name not in names:
            raise SystemExit(f"{option} {item}: no --bundle is named {name!r}")
        out[name] = path
    return out


def default_image(path: Path) -> Path:
    from mmedge.runtime.bench.photo import photo_like

    photo_like(0).resize(DEFAULT_IMAGE_SIZE).save(path)
    return path


def _has_double_newline(bundle) -> bool:
    """libmtmd (Idefics3 / SmolVLM) needs "\\n\\n" as one token; other families do not look it up."""
    from gguf import GGUFReader

    from .baselines.raw_llama import gguf_of

    manifest = json.loads((Path(bundle) / "manifest.json").read_text())
    if "idefics3" not in json.dumps(manifest.get("image", {})):
        return True
    field = GGUFReader(str(gguf_of(bundle))).fields["tokenizer.ggml.tokens"]
    return any(bytes(field.parts[i]) in (b"\n\n", "ĊĊ".encode()) for i in field.data)  # raw or byte-level BPE


def machine_id() -> str:
    try:
        return Path("/etc/machine-id").read_text().strip()[:8]
    except OSError:
        return socket.gethostname()[:8]


def measure_bundle(name, bundle, args, image, checkpoint, mmproj, bandwidth, log) -> dict:
    from mmedge.runtime.bench.runner import run_bench
    from mmedge.runtime.bench.settings import BenchSettings

    from .baselines import bandwidth as bwmod
    from .baselines.raw_llama import raw_decode

    settings = BenchSettings(images=(str(image),), threads=args.threads, reps=1, warmup=1, max_tokens=args.max_tokens)
    skipped, hf, mtmd = {}, None, None
    if checkpoint and not args.no_hf:
        from .baselines.hf_eager import HFEager

        t0 = time.perf_counter()
        hf = HFEager(checkpoint, args.threads)
        hf.generate(image, settings.prompt, args.max_tokens)  # warm-up
        log(f"[{name}] transformers loaded + warmed up in {time.perf_counter() - t0:.1f} s")
    else:
        skipped["hf_eager"] = "no --checkpoint for this bundle" if not checkpoint else "--no-hf"
    mtmd_prompt = None
    if mmproj and not args.no_mtmd and not _has_double_newline(bundle):
        skipped["libmtmd"] = ('the GGUF vocabulary has no single "\\n\\n" token: libmtmd\'s Idefics3 template looks it '
                              "up and aborts the process without it (BASELINES.md); rebuild the preset")
        log(f"[{name}] libmtmd skipped: {skipped['libmtmd']}")
    elif mmproj and not args.no_mtmd:
        from .baselines.llama_mtmd import MtmdBaseline
        from .baselines.raw_llama import gguf_of

        mtmd_prompt = (hf.format(settings.prompt).replace("<image>", "<__media__>") if hf else
                       f"<|im_start|>User:<__media__>{settings.prompt}<end_of_utterance>\nAssistant:")
        t0 = time.perf_counter()
        mtmd = MtmdBaseline(gguf_of(bundle), mmproj, args.threads)
        mtmd.generate(image, mtmd_prompt, args.max_tokens)  # warm-up
        log(f"[{name}] libmtmd loaded + warmed up in {time.perf_counter() - t0:.1f} s")
    else:
        skipped["libmtmd"] = ("no --mmproj for this bundle (llama.cpp's converter makes one for SmolVLM only; "
                              "see BASELINES.md)" if not mmproj else "--no-mtmd")

    rounds = {"mmedge": [], "machine": [], "raw_llama": [], "libmtmd": [], "hf_eager": []}
    loadavg = []
    for r in range(args.reps):
        t0 = time.perf_counter()
        report = run_bench([str(bundle)], settings, progress=False)
        entry = report["bundles"][0]
        rounds["mmedge"].append(entry)
        rounds["machine"].append(report["machine"])
        t1 = time.perf_counter()
        raw = raw_decode(bundle, entry["inputs"]["prompt_positions"], args.max_tokens - 1, args.threads)
        raw.pop("tokens")
        rounds["raw_llama"].append(raw)
        t2 = time.perf_counter()
        if mtmd:
            out = mtmd.generate(image, mtmd_prompt, args.max_tokens)
            out.pop("text", None)
            rounds["libmtmd"].append(out)
        t3 = time.perf_counter()
        if hf:
            rounds["hf_eager"].append(hf.generate(image, settings.prompt, args.max_tokens))
        t4 = time.perf_counter()
        loadavg.append(os.getloadavg())
        log(f"[{name}] round {r + 1}/{args.reps}: mmedge {t1 - t0:.1f} s (TTFT {_med(entry['stages']['ttft_s']):.2f} s), "
            f"raw {t2 - t1:.1f} s, libmtmd {t3 - t2:.1f} s, transformers {t4 - t3:.1f} s; load {loadavg[-1][0]:.2f}")
    if mtmd:
        mtmd.close()

    mmedge = merge_rounds(rounds["mmedge"])
    baselines: dict = {"skipped": skipped}
    baselines["raw_llama"] = _median_of(rounds["raw_llama"], ("prefill_s", "decode_median_s", "decode_total_s",
                                                              "decode_tokens_per_s", "load_s"))
    if rounds["libmtmd"]:
        baselines["libmtmd"] = {"mmproj": str(mmproj), "prompt": mtmd_prompt,
                                **_median_of(rounds["libmtmd"], ("preprocess_s", "encode_s", "prefill_image_s",
                                                                 "prefill_text_s", "prefill_s", "first_token_s",
                                                                 "decode_s", "decode_tokens_per_s"))}
    if rounds["hf_eager"]:
        baselines["hf_eager"] = {"checkpoint": str(checkpoint), "attn_implementation": hf.attn, "threads": hf.threads,
                                 "load_s": hf.load_s,
                                 **_median_of(rounds["hf_eager"], ("preprocess_s", "encode_s", "prefill_s", "decode_s",
                                                                   "decode_step_median_s", "decode_tokens_per_s"))}
    kv = mmedge["decode"]["kv_cells_end"]
    bpt = bwmod.gguf_bytes_per_token(bundle, kv)
    baselines["bandwidth"] = {**bandwidth, "n_ctx": kv, "gguf_bytes_per_token": bpt,
                              "bytes_per_token": bpt["weights_bytes"] + bpt["kv_bytes_at_ctx"],
                              "bound_tokens_per_s": bwmod.decode_bound(bandwidth["bandwidth_GBps"], bpt)}
    mmedge["baselines"] = baselines
    mmedge["targets"] = compute_targets(mmedge, baselines)
    mmedge["suite_name"] = name
    return {"entry": mmedge, "machine": rounds["machine"][0], "loadavg": loadavg}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", action="append", required=True, help="NAME=PATH (repeatable)")
    ap.add_argument("--checkpoint", action="append", help="[NAME=]PATH: the HF checkpoint, for transformers eager")
    ap.add_argument("--mmproj", action="append", help="[NAME=]PATH: llama.cpp mmproj GGUF, for libmtmd")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--image", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--bandwidth-mib", type=int, default=512)
    ap.add_argument("--no-hf", action="store_true")
    ap.add_argument("--no-mtmd", action="store_true")
    args = ap.parse_args(argv)

    from mmedge.runtime.bench.plot import write_plot
    from mmedge.runtime.bench.report import build_report
    from mmedge.runtime.bench.settings import BenchSettings

    from .baselines.bandwidth import measure_bandwidth

    named = [b.partition("=") for b in args.bundle]
    bundles = {n if s else Path(p).name: (p if s else n) for n, s, p in named}
    names = list(bundles)
    checkpoints = _parse_named(args.checkpoint, names, "--checkpoint")
    mmprojs = _parse_named(args.mmproj, names, "--mmproj")
    now = datetime.now(timezone.utc)
    out = Path(args.out or f"benchmarks/results/{now:%Y-%m-%d}-{machine_id()}")
    out.mkdir(parents=True, exist_ok=True)
    image = Path(args.image) if args.image else default_image(Path("/tmp") / "mmedge-suite-1024x256.png")
    log = lambda msg: print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)  # noqa: E731

    loadavg = [os.getloadavg()]
    t0 = time.perf_counter()
    bandwidth = measure_bandwidth(args.bandwidth_mib, args.threads, reps=3)
    log(f"bandwidth {bandwidth['bandwidth_GBps']:.1f} GB/s ({time.perf_counter() - t0:.1f} s)")
    entries, machines = [], []
    for name, path in bundles.items():
        res = measure_bundle(name, path, args, image, checkpoints.get(name), mmprojs.get(name), bandwidth, log)
        entries.append(res["entry"])
        machines.append(res["machine"])
        loadavg += res["loadavg"]
    settings = BenchSettings(images=(str(image),), threads=args.threads, reps=args.reps, warmup=1,
                             max_tokens=args.max_tokens)
    report = build_report(machines, settings, [{k: v for k, v in e.items() if k not in ("label", "ratios_to_first")}
                                               for e in entries])
    report["suite"] = {"interleaved": "per round: mmedge (1 warm-up + 1 timed run, own process), raw llama.cpp, "
                                      "libmtmd, transformers eager", "platform": platform.platform(),
                       "load_average": loadavg, "orchestration_definition": ORCHESTRATION_DEFINITION,
                       "wall_s": time.perf_counter() - t0}
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "results.md").write_text(results_markdown(report))
    (out / "machine.txt").write_text(machine_text(report, loadavg))
    write_plot(report, out / "stages.png")
    for entry in report["bundles"]:
        print(f"\n{entry['suite_name']}: TARGET RATIOS (printed, not asserted)")
        for row in target_rows(entry):
            print(f"  {row[0]:<60} {row[1]:>8}  target {row[2]:<8} {row[3].strip('*')}")
    print(f"\nwrote {out}/results.json, results.md, stages.png, machine.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
