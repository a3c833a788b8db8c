"""Seeded tiny checkpoints built from real `transformers` classes with random weights.

They are the demo's embedded default and the test suite's models: no download, a real
checkpoint folder (safetensors + config + processor + tokenizer) written with
`save_pretrained`, loaded back through the same path a user's checkpoint takes. One module per
family; `TINY_BUILDERS` maps a preset name to its builder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from . import idefics3, instructblip, qwen2_audio, qwen2_vl
from .gemma import PRESETS as GEMMA_PRESETS
from .llava import DEFAULT_PRESET, PRESETS, build_tiny_llava
from .llava_next import PRESETS as ANYRES_PRESETS
from .llava_next import build_tiny_anyres

TINY_BUILDERS: dict[str, Callable[..., Path]] = {
    **{name: (lambda out, seed=0, _n=name: build_tiny_llava(out, _n, seed)) for name in PRESETS},
    **{name: (lambda out, seed=0, _n=name: idefics3.build_tiny_idefics3(out, _n, seed)) for name in idefics3.PRESETS},
    **{name: (lambda out, seed=0, _n=name: build_tiny_anyres(out, _n, seed)) for name in ANYRES_PRESETS},
    **{name: (lambda out, seed=0, _b=builder: _b(out, seed=seed)) for name, builder in GEMMA_PRESETS.items()},
    **{name: (lambda out, seed=0, _n=name: qwen2_vl.build_tiny_qwen2_vl(out, _n, seed)) for name in qwen2_vl.PRESETS},
    **{name: (lambda out, seed=0, _n=name: instructblip.build_tiny_instructblip(out, _n, seed))
       for name in instructblip.PRESETS},
    **{name: (lambda out, seed=0, _n=name: qwen2_audio.build_tiny_qwen2_audio(out, _n, seed)) for name in qwen2_audio.PRESETS},
}


def build_tiny(preset: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Write the tiny checkpoint `preset` (any family) into `out_dir` and return its path."""
    if preset not in TINY_BUILDERS:
        raise KeyError(f"unknown tiny preset {preset!r}; known: {sorted(TINY_BUILDERS)}")
    return TINY_BUILDERS[preset](out_dir, seed=seed)


__all__ = ["DEFAULT_PRESET", "PRESETS", "TINY_BUILDERS", "build_tiny", "build_tiny_llava"]
