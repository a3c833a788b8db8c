"""`mmedge export`: checkpoint folder -> verified bundle, written atomically."""
from __future__ import annotations

import errno
import hashlib
import shutil
import tempfile
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import mmedge
from mmedge.bundle import BundleWriter, artifact_size, sha256_artifact
from mmedge.errors import BelowFloorError, CheckpointError, ExportError, OutputPathError, RecipeError
from mmedge.manifest import ROLES_BY_MODALITY, Manifest, PartSpec, TensorSpec
from mmedge.verification_report import llm_shortfall
from mmedge.progress import SILENT, Progress
from mmedge.quantize.onnx_quant import NEEDS_CALIBRATION
from mmedge.quantize.recipes import llm_recipe, tensor_recipe

from .checkpoint import architecture_of, check_weights
from .pickle_weights import convert_pickle_checkpoint
from mmedge.runtime.prompt import single_turn_frame
from .families import family_for_architecture
from .targets import tensor_target

# The split modules must compute exactly what the model's own image-feature path computes.
SPLIT_TOLERANCE = 1e-5


@dataclass(frozen=True)
class ExportConfig:
    checkpoint: Path
    output: Path
    encoder: str = "fp32"
    projector: str = "fp32"
    llm: str = "F32"
    encoder_target: str = "onnx"
    projector_target: str = "onnx"
    # More targets for both tensor parts in the same bundle (manifest `alternatives`).
    extra_targets: tuple[str, ...] = ()
    calibration_images: Path | None = None  # for int8-static; None = the default set
    overwrite: bool = False
    verify: bool = True
    allow_below_floor: bool = False
    # Keep a quantized GGUF in which llama.cpp wrote some tensors in other types than asked (rows that
    # are not multiples of the type's block); the manifest lists them.
    allow_quant_fallback: bool = False
    # Pickle weights (.bin/.pt) are converted through torch's weights-only loader (export/pickle_weights.py).
    allow_pickle: bool = False
    threads: int = 0
    extra_source: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.threads <= 1024:
            raise RecipeError(f"--threads must be in 0 .. 1024 (0 = every core this process may use), got {self.threads}")
        # Refuse unknown precisions before any heavy work.
        tensor_recipe(self.encoder, "encoder")
        tensor_recipe(self.projector, "projector")
        tensor_target(self.encoder_target).check(self.encoder, "encoder")
        tensor_target(self.projector_target).check(self.projector, "projector")
        for name in self.extra_targets:
            tensor_target(name).check(self.encoder, "encoder")
            tensor_target(name).check(self.projector, "projector")
        if len(set(self.extra_targets) | {self.encoder_target}) != len(self.extra_targets) + 1 or \
                len(set(self.extra_targets) | {self.projector_target}) != len(self.extra_targets) + 1:
            raise RecipeError(f"--target: each target once per part (got {self.encoder_target}, {list(self.extra_targets)})")
        if self.calibration_images is not None:
            from .calibration import load_calibration_images

            load_calibration_images(self.calibration_images)  # refuse an empty or unreadable folder up front
        llm_recipe(self.llm)


def _onnx_specs(graph_path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    import onnx

    model = onnx.load(str(graph_path), load_external_data=False)

    def spec(value):
        t = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
        return TensorSpec(name=value.name, shape=dims, dtype=onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name)

    return [spec(v) for v in model.graph.input], [spec(v) for v in model.graph.output]


def _torch_specs(inputs: dict, out_name: str, output) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """For artifacts without readable signatures: the shapes the module was exported with, batch symbolic."""
    return ([TensorSpec(name, ["batch", *x.shape[1:]], str(x.dtype).removeprefix("torch.")) for name, x in inputs.items()],
            [TensorSpec(out_name, ["batch", *output.shape[1:]], "float32")])


def check_text_backbone(cfg: ExportConfig) -> None:
    """Refuse, by name and before any weight is read, a text backbone whose math llama.cpp cannot
    compute (export/gguf/backbone.py: check_text_config), and a quantized type whose blocks its
    rows do not fill (unless --allow-quant-fallback). Reads config.json only."""
    from transformers import AutoConfig

    from .gguf.backbone import check_text_config
    from .gguf.quantize import QUANT_TYPES, fallbacks_for

    try:
        config = AutoConfig.from_pretrained(str(cfg.checkpoint))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{cfg.checkpoint}/config.json cannot be read as a transformers config: {e}") from None
    text = config.get_text_config()
    check_text_config(text)
    if cfg.llm in QUANT_TYPES and not cfg.allow_quant_fallback:
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        rows = {"hidden_size": text.hidden_size, "intermediate_size": text.intermediate_size,
                "attention output": text.num_attention_heads * head_dim}
        problems = fallbacks_for(cfg.llm, rows)
        if problems:
            raise RecipeError(
                f"--llm {cfg.llm}: llama.cpp would write some tensors in other types: {'; '.join(problems)}. Choose "
                f"a type whose blocks fit (Q8_0 and Q4_0 take rows that are multiples of 32, the K-quants 256), or "
                "pass --allow-quant-fallback to keep what llama.cpp writes (the manifest lists every such tensor)")


def check_family_targets(cfg: ExportConfig, family) -> None:
    """Refuse, before any weight is loaded, a target or recipe the family cannot be compiled for."""
    info = family.info
    for name in {cfg.encoder_target, cfg.projector_target, *cfg.extra_targets}:
        if name not in info.targets:
            raise RecipeError(
                f"--target {name}: the {info.name} family's parts cannot be compiled for {name} "
                f"(it supports {[t for t in info.targets if t != 'gguf']}); choose one of those")
    if not info.static_calibration and {cfg.encoder, cfg.projector} & set(NEEDS_CALIBRATION):
        raise RecipeError(f"the {info.name} family's encoder takes several inputs, which static calibration "
                          f"({sorted(NEEDS_CALIBRATION)}) does not feed; choose int8 (dynamic) or fp32")


def _part(role: str, path: Path, kind: str, precision: str, details: dict, specs=None) -> PartSpec:
    inputs, outputs = _onnx_specs(path) if kind == "onnx" else (specs or ([], []))
    return PartSpec(role=role, file=path.name, kind=kind, precision=precision, sha256=sha256_artifact(path),
                    size_bytes=artifact_size(path), inputs=inputs, outputs=outputs, details=details)


# Write failures that mean "no room": the disk or quota is full, or a file-size limit was hit.
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NEARLY_FULL_BYTES = 64 << 20


def export_bundle(cfg: ExportConfig, progress: Progress = SILENT) -> Manifest:
    """Export, or raise a named error with the destination as it was (BundleWriter stages and aborts)."""
    try:
        return _export_bundle(cfg, progress)
    except OSError as e:
        # Named errors cover the expected I/O failures (unreadable checkpoint, unwritable output);
        # what is left is the disk failing under the writers (numpy's short writes carry no errno).
        where = f"nothing was published at {cfg.output} and the staging files are removed"
        if e.errno in _NO_ROOM or _nearly_full(Path(cfg.output).parent):
            raise OutputPathError(
                f"ran out of room while writing the bundle ({e.strerror}{': ' + str(e.filename) if e.filename else ''}); "
                f"{where}: free space (a bundle needs about the checkpoint's size again, plus temporary files) or "
                "choose another output folder") from None
        raise OutputPathError(f"an I/O error stopped the export ({e}); {where}: check the free space and the output "
                              "folder, then export again") from None


def _nearly_full(folder: Path) -> bool:
    """Whether the file system holding `folder` is (nearly) full: numpy's short writes carry no errno."""
    try:
        return shutil.disk_usage(folder).free < _NEARLY_FULL_BYTES
    except OSError:
        return False


def _export_bundle(cfg: ExportConfig, progress: Progress) -> Manifest:
    # Everything that can refuse the job runs before torch is imported (seconds).
    arch = architecture_of(cfg.checkpoint)
    family = family_for_architecture(arch)
    check_family_targets(cfg, family)
    weights = check_weights(cfg.checkpoint, cfg.allow_pickle)
    check_text_backbone(cfg)
    needs_calibration = cfg.encoder in NEEDS_CALIBRATION or cfg.projector in NEEDS_CALIBRATION
    progress.total = 5 + 2 * len(cfg.extra_targets) + int(cfg.verify) + int(needs_calibration)
    # `converted`: the safetensors copy of a pickle checkpoint, alive for the whole export (families
    # and the GGUF writer read the checkpoint folder's tokenizer and processor files).
    with BundleWriter(cfg.output, overwrite=cfg.overwrite) as writer, \
            tempfile.TemporaryDirectory(prefix="mmedge-safetensors-") as converted:
        import torch

        from .gguf.quantize import quantize_gguf
        from .gguf.writer import write_gguf

        with progress.step(f"loading {arch} checkpoint ({family.info.name} family)"):
            source_extra = {}
            load_path = Path(cfg.checkpoint)
            if weights == "pickle":
                source_extra = convert_pickle_checkpoint(load_path, Path(converted))
                load_path = Path(converted)
            ckpt = family.load(str(load_path))
            # The modality's manifest sections (images: preprocess + image slot; audio: the audio slot).
            sections = family.media_sections(ckpt)
            preprocess = sections["image_preprocess"]
            slot = family.media_slot(ckpt)
            prompt = family.prompt(ckpt)
            prompt = dataclasses.replace(prompt, single_turn=single_turn_frame(prompt, slot, family.modality))
        encoder_role, projector_role = ROLES_BY_MODALITY[family.modality]
        encoder = family.encoder(ckpt)
        projector = family.projector(ckpt)
        examples = family.encoder_example(ckpt, preprocess)
        with torch.no_grad():
            example_features = encoder(**examples)
            projector_extra = family.projector_example(ckpt, example_features)
            split = projector(example_features, **projector_extra)
            own = family.reference_features(ckpt, **examples, **projector_extra).reshape(split.shape)
        split_diff = float((split - own).abs().max())
        if split_diff > SPLIT_TOLERANCE:
            raise ExportError(
                f"internal: the split encoder+projector differ from the model's own image features by {split_diff}; "
                "this transformers version changed the feature path, please report it"
            )
        parts: dict[str, PartSpec] = {}
        with tempfile.TemporaryDirectory(prefix="mmedge-export-") as tmp:
            tmp = Path(tmp)
            calibration = _calibration_inputs(cfg, preprocess, slot, encoder, progress)
            jobs = [(role, target_name, False) for role, target_name in
                    ((encoder_role, cfg.encoder_target), (projector_role, cfg.projector_target))]
            jobs += [(role, name, True) for name in cfg.extra_targets for role in (encoder_role, projector_role)]
            features_name = f"{family.modality}_features"
            io = {
                encoder_role: (encoder, examples, example_features, features_name, cfg.encoder),
                projector_role: (projector, {features_name: example_features, **projector_extra}, split,
                                 f"{family.modality}_embeddings", cfg.projector),
            }
            alternatives: dict[str, list[PartSpec]] = {}
            for role, target_name, is_alternative in jobs:
                module, inputs, output, out_name, precision = io[role]
                target = tensor_target(target_name)
                with progress.step(f"exporting {role} to {target.name} ({precision})"):
                    out = writer.path(f"{role}.{precision}.{target.suffix}")
                    details = target.export(module, inputs, out_name, precision, out, tmp,
                                            calibration=calibration.get(role) if precision in NEEDS_CALIBRATION else None)
                    details["target"] = target.name
                    if precision in NEEDS_CALIBRATION:
                        details["calibration"] = calibration["source"]
                    part = _part(role, out, target.kind, precision, details, _torch_specs(inputs, out_name, output))
                    if is_alternative:
                        alternatives.setdefault(role, []).append(part)
                    else:
                        parts[role] = part

            recipe = llm_recipe(cfg.llm)
            with progress.step("converting the LLM backbone to GGUF"):
                backbone = family.text_backbone(ckpt)
                base_type = cfg.llm if recipe.written_by == "writer" else "F32"
                base_path = (writer.path(f"llm.{cfg.llm}.gguf") if recipe.written_by == "writer"
                             else tmp / "llm.F32.gguf")
                gguf_info = write_gguf(backbone, base_path, base_type, progress=progress)
            with progress.step(f"quantizing the LLM to {cfg.llm} (llama.cpp)" if recipe.written_by != "writer"
                               else "reading back the GGUF's tensor types"):
                final_path = writer.path(f"llm.{cfg.llm}.gguf")
                if recipe.written_by != "writer":
                    # A prefix-LM prompt's text enters as token_embd rows the runtime reads itself (runtime/gguf_rows.py).
                    token_type = "Q8_0" if slot.attention == "prefix" else None
                    kept = {k: gguf_info[k] for k in ("gguf_arch", "deviations") if k in gguf_info}
                    gguf_info = {**kept, **quantize_gguf(base_path, final_path, cfg.llm, threads=cfg.threads,
                                                         token_embedding_type=token_type,
                                                         allow_fallback=cfg.allow_quant_fallback)}
                parts["llm"] = _part("llm", final_path, "gguf", cfg.llm, gguf_info)
                if gguf_info.get("fallback_note"):
                    progress.note(gguf_info["fallback_note"])

        manifest = Manifest(
            family=family.info.name,
            architecture=arch,
            parts=parts,
            **sections,
            prompt=prompt,
            generation={"eos_token_ids": _eos_ids(ckpt)},
            source={
                "checkpoint": Path(cfg.checkpoint).name,
                "config_sha256": hashlib.sha256((Path(cfg.checkpoint) / "config.json").read_bytes()).hexdigest(),
                "split_vs_model_max_abs_diff": split_diff,
                **source_extra,
                **cfg.extra_source,
            },
            created_by=f"mmedge {mmedge.__version__}",
            alternatives=alternatives,
        )
        if cfg.verify:
            from .verify import VerifyOptions, verify_bundle

            # Verification opens the staged bundle exactly as a user would open the final one.
            (writer.staging / "manifest.json").write_text(manifest.to_json())
            with progress.step("verifying every part against PyTorch"):
                report = verify_bundle(writer.staging, family, ckpt, VerifyOptions(threads=cfg.threads), progress=progress)
            report["allow_below_floor"] = cfg.allow_below_floor
            manifest.verification = report
            if not report["passed"] and not cfg.allow_below_floor:
                failing = [p for p in (encoder_role, projector_role, "llm") if not report[p]["passed"]]
                failing += [f"{role} ({alt['target']})" for role, alts in report.get("alternatives", {}).items()
                            for alt in alts if not alt["passed"]]
                if not failing:  # only the end-to-end token match of a full-precision bundle failed
                    raise BelowFloorError(
                        f"the fp32/F32 bundle's greedy tokens differ from transformers generate "
                        f"({report['greedy_tokens_equal']}/{report['greedy_tokens_total']} equal, and not at a near tie); "
                        "this is a conversion bug, please report it with the checkpoint's config.json "
                        "(--allow-below-floor keeps the bundle)"
                    )
                deviations = parts["llm"].details.get("deviations", []) if "llm" in failing else []
                known = f"; llama.cpp is known to differ here: {'; '.join(deviations)}" if deviations else ""
                raise BelowFloorError(
                    f"{', '.join(failing)} fell below the precision floor ({_floor_summary(report, failing)}){known}; "
                    "choose a higher precision, or pass --allow-below-floor to keep the bundle anyway (the manifest records it)"
                )
        else:
            manifest.verification = {"skipped": True}
        writer.commit(manifest)
    return manifest


def _calibration_inputs(cfg: ExportConfig, preprocess, slot, encoder, progress: Progress) -> dict:
    """Input batches for each tensor part, from the calibration images, only when a recipe needs them."""
    if cfg.encoder not in NEEDS_CALIBRATION and cfg.projector not in NEEDS_CALIBRATION:
        return {}
    import numpy as np
    import torch

    from mmedge.runtime.layouts import image_layout

    from .calibration import default_calibration_images, load_calibration_images

    with progress.step("preparing calibration inputs"):
        if cfg.calibration_images is not None:
            images, source = load_calibration_images(cfg.calibration_images), str(cfg.calibration_images)
        else:
            images, source = default_calibration_images(), "default set (16 synthetic photo-like images)"
        # What the encoder will see at run time: the bundle's own layout (tiles, views) of each image.
        layout = image_layout(preprocess, slot)
        tiles = np.concatenate([layout.prepare(img).tiles for img in images])
        pixels = [tiles[i : i + 4] for i in range(0, len(tiles), 4)]
        with torch.no_grad():
            features = [encoder(torch.from_numpy(p)).numpy() for p in pixels]
    return {"vision_encoder": pixels, "projector": features,
            "source": {"images": len(images), "from": source}}


def _eos_ids(ckpt) -> list[int]:
    eos = ckpt.model.generation_config.eos_token_id
    if eos is None:
        eos = ckpt.processor.tokenizer.eos_token_id
    return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None]


def _floor_summary(report: dict, failing: list[str]) -> str:
    out = []
    for p in failing:
        if p not in report:  # an alternative: "<role> (<target>)"
            role, target = p.split(" (")
            r = next(a for a in report["alternatives"][role] if a["target"] == target.rstrip(")"))
            out.append(f"{p}: cosine {r['cosine']:.5f} < {r['floor']['min_cosine']}")
            continue
        r = report[p]
        if "top1_agreement" in r:
            out.append(f"{p}: {llm_shortfall(r)}")
        else:
            out.append(f"{p}: cosine {r['cosine']:.5f} < {r['floor']['min_cosine']}")
    return "; ".join(out)
