"""LLaVA-OneVision parity: the fp32 bundle (per-tile ONNX encoder/projector, numpy anyres assembly
with anyres_max_9 pooling, F32 GGUF in exact mode) reproduces transformers' greedy `generate`."""
from __future__ import annotations

from .parity_helpers import AnyResParitySuite


class TestLlavaOnevisionParity(AnyResParitySuite):
    preset = "onevision-siglip-qwen2"
    max_num_patches = 9
    cases = (
        (((131, 77),), "Describe this image."),  # no marker: the chat template places it; 3x4 grid, rows unpadded
        (((200, 151), (45, 97)), "First <image> then <image>: what differs?"),  # 3x4 pooled to 10x13; 4x3 unpadded
    )
