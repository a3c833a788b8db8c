"""The tiny checkpoints are byte-identical on every CPU: their weights come from a float64 draw of
numpy's PCG64, not from transformers' init or torch's float32 `randn`, whose vectorised sampler
gives other values under ATEN_CPU_CAPABILITY=default than under avx2/avx512. Built here under every
kernel set this CPU has, one child process each."""
from __future__ import annotations

import json

import pytest

from tests.aten_capabilities import aten_capabilities, run_under

# One of each kind of parameter the init handles: CLIP's class embedding and conv patches, SigLIP's
# random-initialised biases and probe, Gemma's norms, Qwen2-VL's 3-D conv, the Q-Former, audio convs.
PRESETS = ("clip-llama-bpe", "onevision-siglip-qwen2", "gemma3-siglip", "qwen2vl-tiny", "instructblip-llama",
           "qwen2audio-tiny")

_BUILD = """
import hashlib, tempfile
from pathlib import Path
from mmedge.export.tiny import build_tiny
digests = {}
with tempfile.TemporaryDirectory() as tmp:
    for preset in json.loads(sys.argv[1]):
        folder = build_tiny(preset, Path(tmp) / preset, seed=0)
        h = hashlib.sha256()
        for f in sorted(folder.glob("*.safetensors")):
            h.update(f.read_bytes())
        digests[preset] = h.hexdigest()
print(json.dumps({"capability": _CAPABILITY, "digests": digests}))
"""


@pytest.fixture(scope="module")
def digests() -> dict[str, dict[str, str]]:
    return {cap: run_under(cap, _BUILD, json.dumps(PRESETS))["digests"] for cap in aten_capabilities()}


def test_the_same_bytes_under_every_kernel_set(digests):
    first = next(iter(digests.values()))
    assert len(set(first.values())) == len(PRESETS)  # different presets, different weights
    for capability, found in digests.items():
        assert found == first, capability


def test_torch_float32_sampling_would_not_be(digests):
    """Control: what the init avoids. torch's float32 normal sampler differs between its portable
    and vectorised kernels, so a checkpoint drawn with it would differ between CPUs."""
    caps = aten_capabilities()
    if len(caps) < 2:
        pytest.skip(f"this CPU runs only torch's {caps} kernels: nothing to compare")
    code = ("g = torch.Generator().manual_seed(0)\n"
            "print(json.dumps({'capability': _CAPABILITY, 'values': torch.randn(4096, generator=g).tolist()}))\n")
    values = [run_under(cap, code)["values"] for cap in (caps[0], caps[-1])]
    assert values[0] != values[1]
