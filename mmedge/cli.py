"""The `mmedge` command: a thin layer over the typed configs of export, verify and runtime.

Every `MmedgeError` becomes one line on stderr and exit code 2; a verification below its
floors exits 1. Heavy modules (torch, onnxruntime, llama.cpp) are imported per command.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

from . import __version__
from .errors import MmedgeError, ServeError
from .verification_report import print_verification

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def deco(fn):
        COMMANDS[name] = fn
        return fn

    return deco


# -- families ---------------------------------------------------------------------------------
@command("families")
def cmd_families(args) -> int:
    from mmedge.export.families import registered_families

    for name, cls in sorted(registered_families().items()):
        i = cls.info
        print(f"{name}")
        print(f"  architectures: {', '.join(i.architectures)}")
        print(f"  modalities:    {', '.join(i.modalities)}")
        print(f"  encoders:      {', '.join(i.encoders)}")
        print(f"  projector:     {i.projector}")
        print(f"  backbones:     {', '.join(i.backbones)}")
        print(f"  targets:       {', '.join(i.targets)}")
    return 0


# -- export -----------------------------------------------------------------------------------
@command("export")
def cmd_export(args) -> int:
    from mmedge.export.exporter import ExportConfig, export_bundle
    from mmedge.progress import Progress

    targets = args.target or ["onnx"]
    cfg = ExportConfig(
        checkpoint=Path(args.checkpoint), output=Path(args.output), encoder=args.encoder, projector=args.projector,
        llm=args.llm, encoder_target=args.encoder_target or targets[0],
        projector_target=args.projector_target or targets[0], extra_targets=tuple(targets[1:]), overwrite=args.force,
        calibration_images=Path(args.calibration_images) if args.calibration_images else None, verify=not args.no_verify, allow_below_floor=args.allow_below_floor,
        allow_quant_fallback=args.allow_quant_fallback,
        allow_pickle=args.allow_pickle,
        threads=args.threads,
    )
    manifest = export_bundle(cfg, Progress(enabled=not args.quiet))
    print(f"bundle written: {args.output}")
    print_verification(manifest.verification)
    return 0


# -- verify -----------------------------------------------------------------------------------
@command("verify")
def cmd_verify(args) -> int:
    from mmedge.export.checkpoint import architecture_of
    from mmedge.export.families import family_for_architecture
    from mmedge.export.pickle_weights import loadable_checkpoint
    from mmedge.export.verify import VerifyOptions, verify_bundle
    from mmedge.progress import Progress

    options = VerifyOptions(greedy_tokens=args.tokens, threads=args.threads, device=args.device, strict=args.strict)
    family = family_for_architecture(architecture_of(args.reference))
    with loadable_checkpoint(args.reference, args.allow_pickle) as folder:
        ckpt = family.load(str(folder))
        report = verify_bundle(args.bundle, family, ckpt, options, progress=Progress(enabled=not args.json))
    if "reference" in report:
        report["reference"] = str(args.reference)  # not the converted copy's temporary folder
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_verification(report)
    return 0 if report["passed"] else 1


# -- run --------------------------------------------------------------------------------------
@command("run")
def cmd_run(args) -> int:
    from mmedge.runtime.layouts import FrameRequest
    from mmedge.runtime.pipeline import GenerationParams, Pipeline, RuntimeOptions
    from mmedge.runtime.sampling import SamplingParams

    frames = FrameRequest(num_frames=args.frames, fps=args.video_fps)
    params = GenerationParams(
        max_new_tokens=args.max_tokens,
        sampling=SamplingParams(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed),
    )
    pipe = Pipeline(args.bundle, RuntimeOptions(n_ctx=args.ctx, n_batch=args.batch, threads=args.threads, exact=args.exact,
                                                 device=args.device, strict=args.strict, target=args.target))
    for note in pipe.placement_notes:
        print(f"mmedge run: warning: {note}", file=sys.stderr)
    streamed: list[str] = []
    try:
        def emit(event):
            streamed.append(event.text)
            sys.stdout.write(event.text)
            sys.stdout.flush()

        result = pipe.generate(args.image or [], args.prompt, params, raw_prompt=args.raw, on_token=emit,
                               audio=args.audio or [], videos=args.video or [], frames=frames)
    finally:
        pipe.close()
    # A UTF-8 sequence the last token left incomplete is not streamed; the result text ends with it.
    sys.stdout.write(result.text[len("".join(streamed)):] + "\n")
    if args.stats:
        s = result.stats
        print(
            f"[load {s.load_s * 1e3:.0f} ms | preprocess {s.preprocess_s * 1e3:.1f} ms | plan {s.plan_s * 1e3:.1f} ms | "
            f"encode {s.encode_s * 1e3:.1f} ms | "
            f"project {s.project_s * 1e3:.1f} ms | prefill {s.prompt_positions} pos {s.prefill_s * 1e3:.1f} ms | "
            f"TTFT {s.first_token_s * 1e3:.1f} ms | decode {s.new_tokens} tok {s.decode_tokens_per_s:.1f} tok/s]",
            file=sys.stderr,
        )
        print("[ran on: " + ", ".join(f"{role} {provider}" for role, provider in s.providers.items()) + "]", file=sys.stderr)
    return 0


# -- bench ------------------------------------------------------------------------------------
@command("bench")
def cmd_bench(args) -> int:
    from mmedge.runtime.bench.report import format_table, write_json
    from mmedge.runtime.bench.runner import check_request, run_bench
    from mmedge.runtime.bench.settings import settings_from_args

    settings = settings_from_args(args)
    check_request(args.bundles, settings, json_out=args.json, plot_out=args.plot)
    remote = None
    if args.remote:
        from mmedge.runtime.bench.remote_run import RemoteRun

        remote = RemoteRun.from_options(args.remote, python=args.remote_python, identity=args.identity,
                                        options=tuple(args.ssh_option or ()), cache=args.remote_cache)
    report = run_bench(args.bundles, settings, progress=not args.quiet, remote=remote)
    print(format_table(report))
    for bundle in report["bundles"]:
        for note in bundle["placement_notes"]:
            print(f"mmedge bench: warning: {bundle['label']}: {note}", file=sys.stderr)
    if args.json:
        write_json(report, args.json)
        print(f"json written: {args.json}")
    if args.plot:
        from mmedge.runtime.bench.plot import write_plot

        write_plot(report, args.plot)
        print(f"plot written: {args.plot}")
    return 0


# -- serve ------------------------------------------------------------------------------------
@command("serve")
def cmd_serve(args) -> int:
    from mmedge.runtime.pipeline import RuntimeOptions
    from mmedge.runtime.serve.app import serve
    from mmedge.runtime.serve.limits import limits_from_args

    if not 0 <= args.port <= 65535:
        raise ServeError(f"--port must be in 0 .. 65535, got {args.port}")
    limits = limits_from_args(args)
    serve(args.bundle, limits, RuntimeOptions(n_ctx=args.ctx, threads=args.threads, exact=args.exact), args.host, args.port)
    return 0


# -- inspect ----------------------------------------------------------------------------------
@command("inspect")
def cmd_inspect(args) -> int:
    from .bundle import open_bundle

    bundle = open_bundle(args.bundle, check_hashes=not args.no_hash)
    m = bundle.manifest
    if args.json:
        print(m.to_json())
        return 0
    print(f"bundle   {bundle.root}  ({m.format} v{m.format_version}, {m.created_by})")
    print(f"family   {m.family} ({m.architecture}) from {m.source.get('checkpoint', '?')}")
    for role, part in m.parts.items():
        print(f"part     {role:<15} {part.kind:<5} {part.precision:<7} {part.size_bytes / 1e6:8.2f} MB  {part.file}  sha256 {part.sha256[:12]}")
        for t in part.inputs:
            print(f"           in  {t.name} {t.shape} {t.dtype}")
        for t in part.outputs:
            print(f"           out {t.name} {t.shape} {t.dtype}")
        if "tensor_types" in part.details:
            print(f"           tensor types {part.details['tensor_types']}")
        if part.details.get("fallback_note"):
            print(f"           note: {part.details['fallback_note']}")
    if m.audio is not None:
        a, f = m.audio, m.audio.features
        print(f"audio    {f.kind}: {f.sampling_rate} Hz, n_fft {f.n_fft}, hop {f.hop_length}, {f.n_mels} mels, "
              f"chunk {f.chunk_frames} frames ({f.max_seconds:g} s)")
        print(f"         marker {a.marker!r} (token {a.marker_token_id}) -> one embedding of width {a.embedding_dim} "
              f"per row; reductions {[list(r) for r in a.reductions]}")
    else:
        _print_image_section(m)
    if m.video is not None:
        v = m.video
        sampling = (f"{v.sampling.num_frames} frames" if v.sampling.num_frames else
                    f"{v.sampling.fps:g} per second" if v.sampling.fps else "every frame")
        print(f"videos   marker {v.marker!r} (token {v.marker_token_id}); frames: {sampling} by default ({v.sampling.rule} rule), "
              f"{v.frames.resample} resize (torch antialiased), mean {list(v.frames.image_mean)}, std {list(v.frames.image_std)}; "
              f"layout {_layout_summary(v.layout)}")
    print(f"prompt   chat template: {'yes' if m.prompt.chat_template else 'no (images, then text)'}; BOS: {m.prompt.add_bos}")
    if m.verification:
        print("verification (at export):")
        print_verification(m.verification)
    return 0


def _print_image_section(m) -> None:
    p = m.image_preprocess
    print(f"images   resize {p.resize_mode} {p.size} ({p.resample}), crop {p.crop_size}, rescale {p.rescale_factor}, "
          f"mean {p.image_mean}, std {p.image_std}")
    print(f"         marker {m.image.marker!r} (token {m.image.marker_token_id}) -> {m.image.tokens_per_image} embeddings "
          f"of width {m.image.embedding_dim} per encoder input; layout {_layout_summary(m.image.layout)}")


def _layout_summary(layout) -> str:
    """The layout kind and its scalar settings (long lists, such as a newline vector, are left out)."""
    fields = {k: v for k, v in layout.to_dict().items() if k != "kind" and not isinstance(v, list)}
    return layout.kind + (f" ({', '.join(f'{k}={v}' for k, v in fields.items())})" if fields else " (one view per image)")


# -- demo -------------------------------------------------------------------------------------
@command("demo")
def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args.out, quiet=args.quiet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmedge", description="Multimodal LLMs from a Hugging Face checkpoint to the edge.")
    parser.add_argument("--version", action="version", version=f"mmedge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("families", help="list the registered model families")

    p = sub.add_parser("export", help="export a checkpoint folder to a verified bundle")
    p.add_argument("checkpoint", help="a local Hugging Face checkpoint folder (safetensors)")
    p.add_argument("-o", "--output", required=True, help="the bundle folder to write")
    p.add_argument("--encoder", default="fp32", help="vision encoder precision: fp32, int8, int4; int8-static (onnx); "
                   "fp16, int4-palette (coreml)")
    p.add_argument("--projector", default="fp32", help="projector precision: same choices as --encoder")
    p.add_argument("--calibration-images", help="folder of images to calibrate int8-static (default: a built-in set)")
    p.add_argument("--llm", default="F32", help="LLM GGUF type: F32, F16, Q8_0, Q4_0, Q4_K_M")
    p.add_argument("--target", action="append", help="target of the encoder and projector: onnx (default), executorch, "
                   "coreml; give it several times to put several compiled variants into one bundle")
    p.add_argument("--encoder-target", help="override --target for the vision encoder (mixed bundles)")
    p.add_argument("--projector-target", help="override --target for the projector (mixed bundles)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at the output path")
    p.add_argument("--no-verify", action="store_true", help="skip verification (the manifest records it)")
    p.add_argument("--allow-below-floor", action="store_true", help="keep a bundle whose parts fall below their floors")
    p.add_argument("--allow-quant-fallback", action="store_true",
                   help="keep a quantized LLM in which llama.cpp wrote some tensors in other types (rows that are not "
                        "multiples of the type's block); the manifest lists them")
    p.add_argument("--allow-pickle", action="store_true",
                   help="accept pickle weights (.bin/.pt): converted to safetensors through torch's weights-only loader, "
                        "which refuses anything but tensors")
    p.add_argument("--threads", type=int, default=0, help="threads for onnxruntime and llama.cpp (0 = every core this process may use)")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("verify", help="measure a bundle against its PyTorch checkpoint")
    p.add_argument("bundle")
    p.add_argument("--reference", required=True, help="the checkpoint folder the bundle was exported from")
    p.add_argument("--allow-pickle", action="store_true",
                   help="accept a reference with pickle weights (.bin/.pt), converted as export --allow-pickle does")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--tokens", type=int, default=32, help="greedy tokens per end-to-end case")
    p.add_argument("--device", default="cpu", help="cpu, gpu, npu or auto")
    p.add_argument("--strict", action="store_true", help="fail instead of falling back to the CPU")
    p.add_argument("--threads", type=int, default=0, help="threads for onnxruntime and llama.cpp (0 = every core this process may use)")

    p = sub.add_parser("run", help="answer a prompt about images, streaming the text")
    p.add_argument("bundle")
    p.add_argument("--image", action="append", help="an image file; repeat for several")
    p.add_argument("--audio", action="append", help="a WAV file (16-bit PCM or 32-bit float, the bundle's rate) for an "
                   "audio bundle; repeat for several")
    p.add_argument("--video", action="append", help="a video file (decoded with PyAV) or a folder of frame images, for "
                   "bundles of families whose HF processor takes videos; repeat for several")
    p.add_argument("--frames", type=int, help="sample this many frames from each video (default: the bundle's, as the "
                   "HF video processor; often every frame)")
    p.add_argument("--video-fps", type=float, help="sample this many frames per second of video instead of --frames")
    p.add_argument("--prompt", required=True)
    p.add_argument("--raw", action="store_true", help="use the prompt as is, without the chat template")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ctx", type=int, default=4096, help="context length in positions (llama.cpp rounds it up to a multiple of 256 and caps it at the model's)")
    p.add_argument("--batch", type=int, default=512, help="llama.cpp batch size; a bidirectional image run or "
                   "prefix (Gemma 3, PaliGemma) must fit in one batch")
    p.add_argument("--threads", type=int, default=0, help="threads for onnxruntime and llama.cpp (0 = every core this process may use)")
    p.add_argument("--exact", action="store_true", help="F32 KV cache and no flash attention (verification mode)")
    p.add_argument("--stats", action="store_true", help="print per-stage timings and where each part ran to stderr")
    p.add_argument("--device", default="cpu", help="cpu, gpu, npu or auto (best present per part)")
    p.add_argument("--strict", action="store_true", help="fail instead of falling back to the CPU when --device is absent")
    p.add_argument("--target", default="auto", help="which compiled variant to run when the bundle holds several "
                   "(onnx, executorch, coreml; auto = the first this machine can run)")

    p = sub.add_parser("serve", help="an OpenAI-compatible HTTP server over a bundle (POST /v1/chat/completions)")
    p.add_argument("bundle")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080)
    from mmedge.runtime.serve.limits import add_arguments as add_serve_limits

    add_serve_limits(p)
    p.add_argument("--ctx", type=int, default=4096)
    p.add_argument("--threads", type=int, default=0, help="threads for onnxruntime and llama.cpp (0 = every core this process may use)")
    p.add_argument("--exact", action="store_true", help="F32 KV cache and no flash attention (verification mode)")

    # The bench options are shared with its worker; that module is standard library only (cheap to import).
    from mmedge.runtime.bench.settings import add_arguments as add_bench_arguments

    p = sub.add_parser("bench", help="time every stage of bundles side by side, each in its own process",
                       description="Time every stage of one or more bundles (each in its own worker process) and "
                       "print a table with ratios to the first bundle; see docs/BENCH.md.")
    p.add_argument("bundles", nargs="+", metavar="BUNDLE")
    add_bench_arguments(p)
    p.add_argument("--json", metavar="OUT", help="write the results as JSON (schema: docs/bench.schema.json)")
    p.add_argument("--plot", metavar="OUT.png", help="draw the stages and rates (needs the bench extra: matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--remote", metavar="ssh://USER@HOST[:PORT]", help="run the workers on this device over ssh (the "
                   "bundle is copied once, by its manifest's sha256; the device needs mmedge[runtime])")
    p.add_argument("--remote-python", default="python3", help="the device's Python that has mmedge (default: python3)")
    p.add_argument("--identity", help="the ssh private key for --remote (ssh -i)")
    p.add_argument("--ssh-option", action="append", metavar="KEY=VALUE", help="an ssh -o option for --remote; repeat")
    p.add_argument("--remote-cache", help="the device's bundle cache folder (default: ~/.cache/mmedge/bundles)")

    p = sub.add_parser("inspect", help="print a bundle's manifest readably")
    p.add_argument("bundle")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.add_argument("--no-hash", action="store_true", help="skip the sha256 check (faster on big bundles)")

    p = sub.add_parser("demo", help="build a tiny LLaVA, export, verify and run it (no network)")
    p.add_argument("--out", help="keep the checkpoint and bundles in this folder")
    p.add_argument("--quiet", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except MmedgeError as e:
        print(f"mmedge {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # e.g. `mmedge inspect B | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"mmedge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
