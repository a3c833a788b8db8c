"""Verification: run fixed inputs through PyTorch and through the bundle, part by part.

Each boundary is measured on its own, with the same input on both sides, so a number tells
which part drifted: preprocessing (HF image processor vs ours), encoder (same pixel values),
projector (same features), LLM (teacher-forced logits over a fixed text), and end to end
(greedy tokens vs `transformers` `generate`, with EOS banned for the whole run on both sides
so that every run compares the same number of tokens).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmedge.cpu import cpu_facts
from mmedge.errors import MmedgeError, VerificationError
from mmedge.progress import SILENT, Progress
from mmedge.quantize.recipes import llm_recipe, tensor_recipe

from .families.base import Family, LoadedCheckpoint
from .greedy_match import compare_greedy
from .verify_inputs import GREEDY_TOKENS, TEACHER_FORCED_TEXT, case_inputs, cases_for


@contextmanager
def reference_step(what: str):
    """The PyTorch side failing is a named error that says which step, never a traceback: the
    checkpoint or transformers could not compute the reference, so nothing can be verified."""
    try:
        yield
    except MmedgeError:
        raise
    except Exception as e:  # transformers raises many types; report one
        raise VerificationError(
            f"the PyTorch reference failed while {what}: {type(e).__name__}: {e}. Nothing can be verified against "
            "it; check that transformers runs this checkpoint (its config and processor files), or export with "
            "--no-verify (the manifest then records that nothing was verified)") from None


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else float(np.array_equal(a, b))


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict:
    if reference.shape != candidate.shape:
        raise VerificationError(f"shapes differ: PyTorch {reference.shape}, bundle {candidate.shape}")
    diff = np.abs(np.asarray(reference, np.float64) - np.asarray(candidate, np.float64))
    return {"cosine": cosine(reference, candidate), "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())}


def compare_calls(references: list[np.ndarray], candidates: list[np.ndarray]) -> dict:
    """`compare` over several calls (one per image) taken together."""
    for r, c in zip(references, candidates, strict=True):
        if r.shape != c.shape:
            raise VerificationError(f"shapes differ: PyTorch {r.shape}, bundle {c.shape}")
    return compare(np.concatenate([r.ravel() for r in references]), np.concatenate([c.ravel() for c in candidates]))


def _compare_preprocessing(ours: list[dict], reference: list[dict]) -> dict:
    """The bundle's encoder inputs vs the HF processor's, image by image and input by input."""
    worst = 0.0
    for i, (a, b) in enumerate(zip(ours, reference, strict=True)):
        if sorted(a) != sorted(b):
            raise VerificationError(f"preprocessing: the bundle's layout makes encoder inputs {sorted(a)}, the HF processor {sorted(b)}")
        for name, ref in b.items():
            ref = ref.numpy()
            if a[name].shape != ref.shape:
                raise VerificationError(f"preprocessing, image {i}: the bundle's layout makes {name} {a[name].shape}, "
                                        f"the HF processor {ref.shape}")
            worst = max(worst, float(np.abs(a[name].astype(np.float64) - ref.astype(np.float64)).max()))
    return {"max_abs_diff": worst, "images": len(ours), "encoder_inputs": sum(int(next(iter(a.values())).shape[0]) for a in ours)}


@dataclass
class VerifyOptions:
    greedy_tokens: int = GREEDY_TOKENS
    threads: int = 0
    device: str = "cpu"
    strict: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.greedy_tokens <= 1024:
            raise VerificationError(f"--tokens must be in 1 .. 1024 greedy tokens per case, got {self.greedy_tokens}")
        if not 0 <= self.threads <= 1024:
            raise VerificationError(f"--threads must be in 0 .. 1024 (0 = every core this process may use), got {self.threads}")


def verify_bundle(bundle_dir: str | Path, family: Family, ckpt: LoadedCheckpoint, options: VerifyOptions | None = None,
                  progress: Progress = SILENT) -> dict:
    """Measure every part of the bundle against the checkpoint; returns the report (a JSON-able dict)."""
    import torch

    from mmedge.bundle import open_bundle
    from mmedge.runtime.backends import open_tensor_part, part_target, select_part, unavailable_reason
    from mmedge.runtime.llamacpp import LlamaModel, LlamaOptions
    from mmedge.runtime.pipeline import Pipeline, RuntimeOptions
    from mmedge.runtime.media import media_layout

    options = options or VerifyOptions()
    runtime_options = RuntimeOptions(exact=True, threads=options.threads, n_ctx=2048, device=options.device,
                                     strict=options.strict)
    bundle = open_bundle(bundle_dir)
    m = bundle.manifest
    if m.family != family.info.name:
        raise VerificationError(f"the bundle is of family {m.family!r}, the reference checkpoint of {family.info.name!r}")
    # Parts this machine cannot run (Core ML off macOS) are checked statically at export; the
    # rest is measured here, and end to end only when every role has a part that runs.
    roles = m.tensor_roles
    cases = family.verify_cases or cases_for(m.modality)
    selected = {r: select_part(m.candidates(r)) for r in roles}
    unavailable = {r: why for r in roles if (why := unavailable_reason(selected[r]))}
    pipe = None if unavailable else Pipeline(bundle, runtime_options)  # already hashed: not again
    runners, llm = {}, None
    try:
        if pipe is not None:
            runners = {roles[0]: pipe.encoder, roles[1]: pipe.projector}
            llm = pipe.llm
        else:
            for role in roles:
                if role not in unavailable:
                    runners[role] = open_tensor_part(bundle.path_for(selected[role]), selected[role], options.threads,
                                                     options.device, options.strict, bundle.verified_sha256(selected[role]))
            llm = LlamaModel(bundle.path_of("llm"), LlamaOptions(n_ctx=2048, n_threads=options.threads, exact=True))
        # The CPU beside the numbers: the same bundle can measure otherwise on another one.
        machine = {**cpu_facts().to_dict(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}
        report: dict = {"reference": str(ckpt.path), "exact_mode": True, "machine": machine,
                        "providers": {r: runners[r].provider if r in runners else f"not run here ({unavailable[r]})"
                                      for r in roles},
                        "placement_notes": pipe.placement_notes if pipe else []}
        report["providers"]["llm"] = pipe.placements["llm"].provider if pipe else "llama.cpp CPU"
        encoder = family.encoder(ckpt)
        projector = family.projector(ckpt)

        with progress.step("verify: preprocessing, encoder, projector"):
            # One encoder call per input, as the runtime makes them (an encoder whose attention
            # spans its whole input, like Qwen2-VL's, must never see two images at once).
            items = [x for case in cases for x in case_inputs(case, m)]
            layout = media_layout(m)
            ours = [layout.prepare(x).encoder_inputs() for x in items]
            with reference_step("preparing the inputs with the checkpoint's processor"):
                hf_inputs = [family.reference_encoder_inputs(ckpt, x, m.media.marker) for x in items]
                # Projector inputs besides the features (InstructBLIP: the prompt's Q-Former ids), HF's.
                extras = [family.reference_projector_inputs(ckpt, x, m.media.marker) for x in items]
            report["preprocess"] = _compare_preprocessing(ours, hf_inputs)

            with reference_step("running the encoder and projector in PyTorch"), torch.no_grad():
                ref_features = [encoder(**x) for x in hf_inputs]
                ref_embeddings = [projector(f, **e) for f, e in zip(ref_features, extras)]
                model_features = [family.reference_features(ckpt, **x, **e) for x, e in zip(hf_inputs, extras)]
            report["split_vs_model_max_abs_diff"] = max(
                float((e - f.reshape(e.shape)).abs().max()) for e, f in zip(ref_embeddings, model_features))
            report["alternatives"] = {}
            features_name = f"{m.modality}_features"
            calls = {roles[0]: ([{k: v.numpy() for k, v in x.items()} for x in hf_inputs], ref_features),
                     roles[1]: ([_projector_call(f, e, features_name) for f, e in zip(ref_features, extras)], ref_embeddings)}
            for role, (xs, refs) in calls.items():
                refs = [r.numpy() for r in refs]
                for part in m.candidates(role):
                    if part is selected[role] and role in runners:
                        numbers = compare_calls(refs, [runners[role].run(x) for x in xs])
                    elif unavailable_reason(part) is None:
                        runner = open_tensor_part(bundle.path_for(part), part, options.threads, options.device, options.strict,
                                                  bundle.verified_sha256(part))
                        numbers = compare_calls(refs, [runner.run(x) for x in xs])
                    else:
                        numbers = _static_check(part, unavailable_reason(part))
                    numbers = _with_floor(numbers, part.precision, role)
                    numbers["target"] = part_target(part)
                    if part is m.parts[role]:
                        report[role] = numbers
                    else:
                        report["alternatives"].setdefault(role, []).append(numbers)
            report["selected_targets"] = {r: part_target(p) for r, p in selected.items()}

        tolerance = exact_logit_tolerance(m)
        with progress.step("verify: LLM teacher-forced logits"):
            report["llm"] = _verify_llm(llm, family, ckpt, m.parts["llm"].precision, tolerance)

        # A full-precision bundle must reproduce generate token for token (up to a near tie, see
        # greedy_match.py); quantized ones report how far they get.
        full_precision = (m.parts[roles[0]].precision, m.parts[roles[1]].precision, m.parts["llm"].precision) == (
            "fp32", "fp32", "F32")
        if pipe is not None:
            with progress.step(f"verify: end to end, {options.greedy_tokens} greedy tokens per case vs transformers generate"):
                results = [_verify_case(pipe, family, ckpt, case, options.greedy_tokens,
                                        tolerance if full_precision else None) for case in cases]
        else:
            results = []
            report["end_to_end_unverified"] = "; ".join(f"{r}: {why}" for r, why in unavailable.items())
        report["end_to_end"] = results
        report["greedy_tokens_equal"] = sum(c["greedy_tokens_equal"] for c in results)
        report["greedy_tokens_total"] = sum(c["greedy_tokens_total"] for c in results)
        report["end_to_end_must_match"] = full_precision and pipe is not None
        e2e_ok = all(c["matches"] for c in results) or not report["end_to_end_must_match"]
        alternatives_ok = all(a["passed"] for alts in report["alternatives"].values() for a in alts)
        report["passed"] = e2e_ok and alternatives_ok and all(report[p]["passed"] for p in (*roles, "llm"))
        return report
    finally:
        if pipe is not None:
            pipe.close()
        elif llm is not None:
            llm.close()


def _projector_call(features, extra: dict, features_name: str):
    """One projector call's inputs: the features alone, or by name with the extra inputs."""
    if not extra:
        return features.numpy()
    return {features_name: features.numpy(), **{k: v.numpy() for k, v in extra.items()}}


def _static_check(part, why: str) -> dict:
    """The export-time check of a part this machine cannot run (e.g. Core ML's, in its details)."""
    check = part.details.get("linux_check")
    if not check:
        raise VerificationError(f"parts.{part.role} cannot run here ({why}) and the bundle holds no static check for it")
    return {"cosine": check["cosine"], "max_abs_diff": check["max_abs_diff"], "method": check["method"],
            "runtime_parity": check["runtime_parity"]}


def _with_floor(numbers: dict, precision: str, part: str) -> dict:
    recipe = tensor_recipe(precision, part)
    numbers.update(precision=precision, floor={"min_cosine": recipe.min_cosine}, passed=numbers["cosine"] >= recipe.min_cosine)
    return numbers


def exact_logit_tolerance(manifest) -> float | None:
    """The F32 LLM's logit tolerance in exact mode, relative to the largest |logit| (its llama.cpp
    architecture's, export/gguf/backbone.py); None for a quantized LLM, judged by top-1 instead."""
    from .gguf.backbone import F32_LOGIT_TOLERANCE

    llm = manifest.parts["llm"]
    if not llm_recipe(llm.precision).exact:
        return None
    arch = llm.details.get("gguf_arch")
    if arch not in F32_LOGIT_TOLERANCE:
        raise VerificationError(f"the bundle's LLM architecture {arch!r} has no exact-mode tolerance; "
                                f"mmedge knows {sorted(F32_LOGIT_TOLERANCE)}")
    return F32_LOGIT_TOLERANCE[arch]


def _verify_llm(llm, family: Family, ckpt: LoadedCheckpoint, precision: str, tolerance: float | None) -> dict:
    """Teacher-forced logits over a fixed text. An exact type (F32) passes when its largest logit
    difference is within `tolerance` of the largest |logit|; a quantized one by its top-1 share."""
    import torch

    tok = ckpt.processor.tokenizer
    ids = tok(TEACHER_FORCED_TEXT).input_ids
    with reference_step("computing the LLM's logits in PyTorch"), torch.no_grad():
        ref = family.reference_text_logits(ckpt, torch.tensor([ids]))[0].numpy()
    llm.reset()
    ours = llm.decode_tokens(ids, logits_for="all")
    llm.reset()
    last = compare(ref[-1], ours[-1])
    top1 = float(np.mean(ref.argmax(-1) == ours.argmax(-1)))
    all_diff = float(np.abs(ref.astype(np.float64) - ours).max())
    scale = float(np.abs(ref).max())
    recipe = llm_recipe(precision)
    if recipe.exact:
        floor = {"max_abs_diff": tolerance * scale, "relative_to_largest_logit": tolerance}
        passed = all_diff <= floor["max_abs_diff"]
    else:
        floor = {"min_top1": recipe.min_top1}
        passed = top1 >= recipe.min_top1
    return {
        "positions": len(ids),
        "cosine": last["cosine"],
        "max_abs_diff": last["max_abs_diff"],
        "last_logit_max_abs_diff": last["max_abs_diff"],
        "all_positions_max_abs_diff": all_diff,
        "largest_logit": scale,
        "top1_agreement": top1,
        "precision": precision,
        "floor": floor,
        "passed": passed,
    }


def _verify_case(pipe, family: Family, ckpt: LoadedCheckpoint, case, n_tokens: int, tolerance: float | None) -> dict:
    import torch

    from mmedge.runtime.pipeline import GenerationParams

    m = pipe.manifest
    items = case_inputs(case, m)
    prompt = case.prompt.replace(f"<{m.modality}>", m.media.marker)
    text = pipe.format(prompt, len(items))
    with reference_step(f"generating with transformers ({case.name})"), torch.no_grad():
        inputs = family.reference_inputs(ckpt, items, text)
        out = ckpt.model.generate(
            **inputs, do_sample=False, max_new_tokens=n_tokens, min_new_tokens=n_tokens,
            pad_token_id=ckpt.processor.tokenizer.pad_token_id,
            # Ban the same end-of-generation set on both sides: llama.cpp's EOG list from the GGUF.
            eos_token_id=[int(t) for t in pipe.llm.eog_tokens],
            output_scores=True, return_dict_in_generate=True,
            # The reference decodes with its KV cache whatever the checkpoint's `use_cache` says
            # (a training-time setting; transformers' testers save False): the same greedy tokens.
            use_cache=True,
        )
    ref_tokens = out.sequences[0, inputs["input_ids"].shape[1]:].tolist()
    media = {"images": [], "audio": items} if m.modality == "audio" else {"images": items}
    result = pipe.generate(prompt=prompt, params=GenerationParams(max_new_tokens=n_tokens, min_new_tokens=n_tokens), **media)
    hf_prompt = [t for t in inputs["input_ids"][0].tolist() if t != m.media.marker_token_id]
    match = compare_greedy(ref_tokens, [s[0].numpy() for s in out.scores], result.tokens, tolerance)
    return {
        "case": case.name,
        "images": len(items),
        "prompt_tokens_equal": hf_prompt == result.prompt_tokens,
        "greedy_tokens_equal": match.equal,
        "greedy_tokens_total": n_tokens,
        "first_difference": match.first_difference,
        "matches": match.matches,
        "reference_tokens": ref_tokens,
        "bundle_tokens": result.tokens,
    }
