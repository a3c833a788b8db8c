"""Random weights that make a tiny model say varied, input-dependent things."""
from __future__ import annotations


def scaled_random_init(model, seed: int, weight_scale: float) -> None:
    """Matrices get variance weight_scale^2 / fan_in, embeddings N(0, 1), 1-D weights a small
    perturbation (so that no norm or bias is trivially identity); other tensors (convolutions)
    keep transformers' init plus that perturbation.

    transformers' own init (std 0.02) makes a tiny random model repeat one token forever, which
    would make token-for-token parity a weak test; these weights give varied, image-dependent
    greedy text. Higher scales are more sensitive to numeric error.
    """
    import torch

    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed + 1)
        for name, param in sorted(model.named_parameters()):
            noise = torch.randn(param.shape, generator=gen)
            if param.ndim == 2 and "embed" in name:
                param.copy_(noise)
            elif param.ndim == 2:
                param.copy_(noise * weight_scale / param.shape[1] ** 0.5)
            else:
                param.add_(noise * 0.05)


def write_json(path, data: dict) -> None:
    """A config file as transformers writes its own (indented, sorted keys)."""
    import json
    from pathlib import Path

    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
