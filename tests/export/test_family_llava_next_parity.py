"""LLaVA-NeXT parity: the fp32 bundle (per-tile ONNX encoder/projector, numpy anyres assembly,
F32 GGUF in exact mode) reproduces transformers' greedy `generate` token for token."""
from __future__ import annotations

from .parity_helpers import AnyResParitySuite


class TestLlavaNextParity(AnyResParitySuite):
    preset = "next-clip-llama"
    max_num_patches = None  # LLaVA-NeXT never pools
    cases = (
        (((131, 77),), "Describe this image."),  # no marker: the chat template places it; 2x2 grid, rows unpadded
        (((45, 97), (120, 45)), "First <image> then <image>: what differs?"),  # 3x1 and 1x3 grids, padded both ways
    )
