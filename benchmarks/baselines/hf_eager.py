"""Baseline: the checkpoint in transformers, eager PyTorch on the CPU, timed by stage.

No mmedge code on the timed path: the model and processor are loaded through mmedge's family (the
same `from_pretrained` call, float32, plus the processor workarounds some families need offline),
and everything after that is transformers' own forward:

    inputs = processor(images=[image], text=chat_template(prompt), return_tensors="pt")  -> "preprocess"
    model(**inputs, use_cache=True)                                                       -> one forward, split by hooks:
        start .. language model's first layer input  = "encode" (vision tower + projector + HF's merge/packing)
        language model + lm_head                     = "prefill"
    loop: model(input_ids=[[tok]], cache=cache, use_cache=True); tok = argmax    -> "decode" per token

The split is taken with a forward pre-hook and a forward hook on the text model
(`model.model.language_model` / `text_model`), so it is exactly HF's own order of work, for any
LLaVA-like family (LLaVA, LLaVA-NeXT/OneVision, Idefics3/SmolVLM, Gemma 3, PaliGemma); M-RoPE families
(Qwen2-VL) decode correctly only through `generate` (rope deltas) and are not covered here.
End-of-generation is ignored: `n_decode` tokens always come.

    python -m benchmarks.baselines.hf_eager CHECKPOINT IMAGE [--prompt TEXT] [--decode 16] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def _text_model(model):
    inner = model.model
    for name in ("language_model", "text_model"):
        if hasattr(inner, name):
            return getattr(inner, name)
    raise ValueError(f"{type(model).__name__}: no language_model / text_model under .model")


class HFEager:
    def __init__(self, checkpoint: str | Path, threads: int = 0, attn_implementation: str | None = None):
        import torch

        from mmedge.export.checkpoint import architecture_of
        from mmedge.export.families import family_for_architecture

        if threads:
            torch.set_num_threads(threads)
        t0 = time.perf_counter()
        self.family = family_for_architecture(architecture_of(checkpoint))
        self.ckpt = self.family.load(str(checkpoint))
        self.model, self.processor = self.ckpt.model, self.ckpt.processor
        if attn_implementation:
            self.model.set_attn_implementation(attn_implementation)
        self.load_s = time.perf_counter() - t0
        self.attn = self.model.config._attn_implementation
        self.threads = torch.get_num_threads()
        self._marks: dict[str, float] = {}

        def lm_start(*_):  # a pre-hook's return value would replace the inputs: return None
            self._marks.setdefault("lm_start", time.perf_counter())

        def lm_end(*_):
            self._marks["lm_end"] = time.perf_counter()

        lm = _text_model(self.model)
        lm.register_forward_pre_hook(lm_start)
        lm.register_forward_hook(lm_end)

    def format(self, prompt: str) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def generate(self, image, prompt: str, n_decode: int = 16) -> dict:
        import torch

        from PIL import Image

        img = image if isinstance(image, Image.Image) else Image.open(image).convert("RGB")
        text = self.format(prompt)
        with torch.no_grad():
            t0 = time.perf_counter()
            inputs = self.family.reference_inputs(self.ckpt, [img], text)
            preprocess_s = time.perf_counter() - t0
            self._marks.clear()
            t0 = time.perf_counter()
            out = self.model(**inputs, use_cache=True)
            t_end = time.perf_counter()
            encode_s = self._marks["lm_start"] - t0
            prefill_s = t_end - self._marks["lm_start"]
            cache = out.cache
            token = out.logits[:, -1].argmax(-1, keepdim=True)
            generated, steps = [int(token)], []
            mask = inputs.get("attention_mask")
            for _ in range(n_decode - 1):
                if mask is not None:
                    mask = torch.cat([mask, mask.new_ones(1, 1)], dim=1)
                t0 = time.perf_counter()
                out = self.model(input_ids=token, attention_mask=mask, cache=cache, use_cache=True)
                token = out.logits[:, -1].argmax(-1, keepdim=True)
                steps.append(time.perf_counter() - t0)
                cache = out.cache
                generated.append(int(token))
        n_prompt = int(inputs["input_ids"].shape[1])
        return {
            "preprocess_s": preprocess_s, "encode_s": encode_s, "prefill_s": prefill_s,
            "decode_s": sum(steps), "decode_step_median_s": statistics.median(steps) if steps else float("nan"),
            "decode_tokens_per_s": len(steps) / sum(steps) if steps else float("nan"),
            "prompt_positions": n_prompt, "tokens": generated,
        }


def hf_eager_stages(checkpoint: str | Path, image, prompt: str = "Describe the picture.", n_decode: int = 16,
                    threads: int = 0, reps: int = 3, attn_implementation: str | None = None) -> dict:
    """Load once, one warm-up run, then the median of `reps` runs per stage."""
    runner = HFEager(checkpoint, threads, attn_implementation)
    runner.generate(image, prompt, n_decode)  # warm-up (first-call allocations, oneDNN kernel choice)
    runs = [runner.generate(image, prompt, n_decode) for _ in range(reps)]
    out = {"checkpoint": str(checkpoint), "attn_implementation": runner.attn, "threads": runner.threads,
           "load_s": runner.load_s, "reps": reps, **runs[-1]}
    for key in ("preprocess_s", "encode_s", "prefill_s", "decode_s", "decode_step_median_s", "decode_tokens_per_s"):
        out[key] = statistics.median(r[key] for r in runs)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("image")
    ap.add_argument("--prompt", default="Describe the picture.")
    ap.add_argument("--decode", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--attn", default=None, help="attn_implementation: eager, sdpa (default: the checkpoint's / transformers')")
    args = ap.parse_args(argv)
    print(json.dumps(hf_eager_stages(args.checkpoint, args.image, args.prompt, args.decode, args.threads, args.reps,
                                     args.attn), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
