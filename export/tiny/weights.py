"""Random weights that make a tiny model say varied, input-dependent things, the same on every CPU."""
from __future__ import annotations


def scaled_random_init(model, seed: int, weight_scale: float) -> None:
    """Every parameter is set from a float64 draw of numpy's PCG64 (seed + 1), in sorted name order:

    - token and position tables (2-D, "embed" in the name): N(0, 1);
    - a parameter that transformers initialised to a constant (a norm's ones, a bias's zeros) keeps
      it plus a small perturbation N(0, 0.05^2), so that no norm or bias is trivially identity;
    - every other one (matrices, convolutions, class embeddings, probes, randomly initialised
      vectors): N(0, weight_scale^2 / fan_in), fan_in = the product of all dims but the first
      (a vector's own length).

    Nothing is left to transformers' random init or torch's float32 `randn`: both depend on the CPU
    (torch's vectorised normal sampler gives other float32 values under ATEN_CPU_CAPABILITY=default
    than under avx2/avx512), and a tiny model that differs per machine makes every measured margin
    a property of the machine. A float64 draw rounded to float32 is the same everywhere.

    transformers' own init (std 0.02) makes a tiny random model repeat one token forever, which
    would make token-for-token parity a weak test; these weights give varied, image-dependent
    greedy text. Higher scales are more sensitive to numeric error.
    """
    import math

    import numpy as np
    import torch

    rng = np.random.default_rng(seed + 1)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            noise = torch.from_numpy(rng.standard_normal(tuple(param.shape)).astype(np.float32))
            if param.ndim == 2 and "embed" in name:
                param.copy_(noise)
            elif param.numel() == 1 or bool((param == param.flatten()[0]).all()):
                param.add_(noise * 0.05)
            else:
                fan_in = math.prod(param.shape[1:]) if param.ndim > 1 else param.shape[0]
                param.copy_(noise * (weight_scale / fan_in**0.5))


def write_json(path, data: dict) -> None:
    """A config file as transformers writes its own (indented, sorted keys)."""
    import json
    from pathlib import Path

    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
