"""A valid manifest dict and helpers to break it, shared by the manifest test files."""
from __future__ import annotations

import pytest

from mmedge.errors import ManifestError
from mmedge.manifest import Manifest

SHA_A = "0123456789abcdef" * 4
SHA_B = "f" * 64
SHA_C = "a1" * 32


def valid_manifest_dict() -> dict:
    """A complete manifest as `Manifest.to_dict` lays it out (a LLaVA-1.5-like CLIP + Llama bundle)."""
    return {
        "format": "mmedge-bundle",
        "format_version": 1,
        "created_by": "mmedge 0.1.0",
        "family": "llava",
        "architecture": "LlavaForConditionalGeneration",
        "source": {"checkpoint": "llava-1.5-7b-hf", "sha256": SHA_A},
        "parts": {
            "vision_encoder": {
                "file": "vision_encoder.onnx",
                "kind": "onnx",
                "precision": "fp32",
                "sha256": SHA_A,
                "size_bytes": 1234,
                "inputs": [{"name": "pixel_values", "shape": ["batch", 3, 336, 336], "dtype": "float32"}],
                "outputs": [{"name": "features", "shape": ["batch", 576, 1024], "dtype": "float32"}],
                "details": {"opset": 17},
            },
            "projector": {
                "file": "projector.onnx",
                "kind": "onnx",
                "precision": "fp16",
                "sha256": SHA_B,
                "size_bytes": 0,
                "inputs": [{"name": "features", "shape": ["batch", 576, 1024], "dtype": "float32"}],
                "outputs": [{"name": "embeddings", "shape": ["batch", 576, 4096], "dtype": "float32"}],
                "details": {},
            },
            "llm": {
                "file": "llm.gguf",
                "kind": "gguf",
                "precision": "Q4_K_M",
                "sha256": SHA_C,
                "size_bytes": 4_000_000_000,
                "inputs": [],
                "outputs": [],
                "details": {"tensor_types": {"Q4_K": 200, "F32": 65}},
            },
        },
        "preprocess": {
            "image": {
                "resize_mode": "shortest_edge",
                "size": {"shortest_edge": 336},
                "resample": "bicubic",
                "crop_size": {"height": 336, "width": 336},
                "rescale_factor": 1 / 255,
                "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711],
                "convert_rgb": True,
                "layout": "NCHW",
                "dtype": "float32",
            }
        },
        "image": {"marker": "<image>", "marker_token_id": 32000, "tokens_per_image": 576, "embedding_dim": 4096,
                  "layout": {"kind": "single"}, "attention": "causal", "embedding_divisor": 1.0},
        "prompt": {
            "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}",
            "fallback_format": "{images}{text}",
            "add_bos": True,
            "prepend_space": False,
            "first_position": 0,
        },
        "generation": {"eos_token_ids": [2], "max_new_tokens": 512},
        "verification": {"greedy_tokens_equal": 32, "greedy_tokens_total": 32},
    }


def set_path(d: dict, path: str, value) -> dict:
    keys = path.split(".")
    for k in keys[:-1]:
        d = d[k]
    d[keys[-1]] = value


def delete_path(d: dict, path: str) -> None:
    keys = path.split(".")
    for k in keys[:-1]:
        d = d[k]
    del d[keys[-1]]


def manifest_error(d) -> str:
    with pytest.raises(ManifestError) as e:
        Manifest.from_dict(d)
    return str(e.value)
