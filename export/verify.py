"""Verification: run fixed inputs through PyTorch and through the bundle, part by part.

Each boundary is measured on its own, with the same input on both sides, so a number tells
which part drifted: preprocessing (HF image processor vs ours), encoder (same pixel values),
projector (same features), LLM (teacher-forced logits over a fixed text), and end to end
(greedy tokens vs `transformers` `generate`, with EOS banned for the whole run on both sides
so that every run compares the same number of tokens).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmedge.errors import VerificationError
from mmedge.progress import SILENT, Progress
from mmedge.quantize.recipes import llm_recipe, tensor_recipe

from .families.base import Family, LoadedCheckpoint
from .verify_inputs import CASES, GREEDY_TOKENS, TEACHER_FORCED_TEXT, case_images


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


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass
class VerifyOptions:
    greedy_tokens: int = GREEDY_TOKENS
    threads: int = 0
    device: str = "cpu"
    strict: bool = False


def verify_bundle(bundle_dir: str | Path, family: Family, ckpt: LoadedCheckpoint, options: VerifyOptions | None = None,
                  progress: Progress = SILENT) -> dict:
    """Measure every part of the bundle against the checkpoint; returns the report (a JSON-able dict)."""
    import torch

    from mmedge.runtime.pipeline import GenerationParams, Pipeline, RuntimeOptions
    from mmedge.runtime.preprocess import preprocess_images

    options = options or VerifyOptions()
    pipe = Pipeline(bundle_dir, RuntimeOptions(exact=True, threads=options.threads, n_ctx=2048, device=options.device,
                                               strict=options.strict))
    try:
        m = pipe.manifest
        if m.family != family.info.name:
            raise VerificationError(f"the bundle is of family {m.family!r}, the reference checkpoint of {family.info.name!r}")
        report: dict = {"reference": str(ckpt.path), "exact_mode": True,
                        "providers": {role: p.provider for role, p in pipe.placements.items()},
                        "placement_notes": pipe.placement_notes}
        encoder = family.vision_encoder(ckpt)
        projector = family.projector(ckpt)

        with progress.step("verify: preprocessing, encoder, projector"):
            images = [img for case in CASES for img in case_images(case)]
            hf_pixels = family.reference_inputs(ckpt, images, m.image.marker * len(images))["pixel_values"]
            ours = preprocess_images(images, m.image_preprocess)
            report["preprocess"] = {"max_abs_diff": float(np.abs(ours - hf_pixels.numpy()).max()), "images": len(images)}

            with torch.no_grad():
                ref_features = encoder(hf_pixels)
                ref_embeddings = projector(ref_features)
                model_features = family.reference_image_features(ckpt, hf_pixels)
            report["split_vs_model_max_abs_diff"] = float((ref_embeddings - model_features.reshape(ref_embeddings.shape)).abs().max())
            enc_out = pipe.encoder.run(hf_pixels.numpy())
            proj_out = pipe.projector.run(ref_features.numpy())
            report["vision_encoder"] = _with_floor(
                compare(ref_features.numpy(), enc_out), m.parts["vision_encoder"].precision, "vision_encoder"
            )
            report["projector"] = _with_floor(compare(ref_embeddings.numpy(), proj_out), m.parts["projector"].precision, "projector")

        with progress.step("verify: LLM teacher-forced logits"):
            report["llm"] = _verify_llm(pipe, ckpt, m.parts["llm"].precision)

        with progress.step(f"verify: end to end, {options.greedy_tokens} greedy tokens per case vs transformers generate"):
            cases = [_verify_case(pipe, family, ckpt, case, options.greedy_tokens) for case in CASES]
        report["end_to_end"] = cases
        report["greedy_tokens_equal"] = sum(c["greedy_tokens_equal"] for c in cases)
        report["greedy_tokens_total"] = sum(c["greedy_tokens_total"] for c in cases)
        # A full-precision bundle must reproduce generate token for token; quantized ones report it.
        full_precision = (m.parts["vision_encoder"].precision, m.parts["projector"].precision, m.parts["llm"].precision) == (
            "fp32", "fp32", "F32")
        report["end_to_end_must_match"] = full_precision
        e2e_ok = report["greedy_tokens_equal"] == report["greedy_tokens_total"] or not full_precision
        report["passed"] = e2e_ok and all(report[p]["passed"] for p in ("vision_encoder", "projector", "llm"))
        return report
    finally:
        pipe.close()


def _with_floor(numbers: dict, precision: str, part: str) -> dict:
    recipe = tensor_recipe(precision, part)
    numbers.update(precision=precision, floor={"min_cosine": recipe.min_cosine}, passed=numbers["cosine"] >= recipe.min_cosine)
    return numbers


def _verify_llm(pipe, ckpt: LoadedCheckpoint, precision: str) -> dict:
    import torch

    tok = ckpt.processor.tokenizer
    ids = tok(TEACHER_FORCED_TEXT).input_ids
    with torch.no_grad():
        ref = ckpt.model(input_ids=torch.tensor([ids])).logits[0].numpy()
    pipe.llm.reset()
    ours = pipe.llm.decode_tokens(ids, logits_for="all")
    pipe.llm.reset()
    last = compare(ref[-1], ours[-1])
    top1 = float(np.mean(ref.argmax(-1) == ours.argmax(-1)))
    recipe = llm_recipe(precision)
    return {
        "positions": len(ids),
        "cosine": last["cosine"],
        "max_abs_diff": last["max_abs_diff"],
        "last_logit_max_abs_diff": last["max_abs_diff"],
        "all_positions_max_abs_diff": float(np.abs(ref - ours).max()),
        "top1_agreement": top1,
        "precision": precision,
        "floor": {"min_top1": recipe.min_top1},
        "passed": top1 >= recipe.min_top1,
    }


def _verify_case(pipe, family: Family, ckpt: LoadedCheckpoint, case, n_tokens: int) -> dict:
    import torch

    from mmedge.runtime.pipeline import GenerationParams

    m = pipe.manifest
    images = case_images(case)
    prompt = case.prompt.replace("<image>", m.image.marker)
    text = pipe.format(prompt, len(images))
    inputs = family.reference_inputs(ckpt, images, text)
    with torch.no_grad():
        out = ckpt.model.generate(
            **inputs, do_sample=False, max_new_tokens=n_tokens, min_new_tokens=n_tokens,
            pad_token_id=ckpt.processor.tokenizer.pad_token_id,
            # Ban the same end-of-generation set on both sides: llama.cpp's EOG list from the GGUF.
            eos_token_id=[int(t) for t in pipe.llm.eog_tokens],
        )
    ref_tokens = out[0, inputs["input_ids"].shape[1]:].tolist()
    result = pipe.generate(images, prompt, GenerationParams(max_new_tokens=n_tokens, min_new_tokens=n_tokens))
    hf_prompt = [t for t in inputs["input_ids"][0].tolist() if t != m.image.marker_token_id]
    equal = common_prefix(ref_tokens, result.tokens)
    return {
        "case": case.name,
        "images": len(images),
        "prompt_tokens_equal": hf_prompt == result.prompt_tokens,
        "greedy_tokens_equal": equal,
        "greedy_tokens_total": n_tokens,
        "reference_tokens": ref_tokens,
        "bundle_tokens": result.tokens,
    }
