"""An int8 ONNX part computes the same numbers on every x86 CPU.

onnxruntime multiplies uint8 activations by int8 weights with `vpmaddubsw` on AVX2 (and AVX-512
without VNNI), which adds two products into a saturating int16; VNNI does not saturate. A part
quantized with full-range weights therefore measured cosine ~0.9996 where it was verified (VNNI)
and ~0.965 on an AVX2 laptop. mmedge's int8 recipes use 7-bit weights (`reduce_range`), whose sums
never saturate: this test runs the graphs on this CPU and under qemu-user's emulated Haswell (AVX2,
no VNNI, no AVX-512) and requires bit-identical outputs, with the full-range graph as the control
that shows the emulated CPU really is the saturating kind. ExecuTorch's int8 (XNNPACK) needs no
such setting: it does not saturate, and its outputs agree to float rounding on both (checked too).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

QEMU = shutil.which("qemu-x86_64")
RUNNER = Path(__file__).with_name("int8_runner.py")


def _run(folder: Path, emulated: bool) -> dict:
    command = [sys.executable, str(RUNNER), str(folder), "haswell" if emulated else "here"]
    if emulated:  # Haswell: AVX2 + FMA, no VNNI, no AVX-512
        command = [QEMU, "-cpu", "Haswell", *command]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def graphs(tmp_path_factory, checkpoints, fp32_bundle, bundles_with_targets):
    """The tiny LLaVA's vision encoder as exported (fp32), through mmedge's int8 and int8-static
    recipes, through the full-range dynamic int8 that mmedge used to write (the control), and as
    the int8 ExecuTorch program (XNNPACK's 8da8w) of a bundle the native tests use too."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from mmedge.bundle import open_bundle
    from mmedge.export.targets.onnx import export_onnx
    from mmedge.export.verify_inputs import case_inputs, cases_for
    from mmedge.quantize.onnx_quant import apply_onnx_recipe
    from mmedge.runtime.media import media_layout

    from ..export.parity_helpers import load_reference

    folder = tmp_path_factory.mktemp("int8-any-cpu")
    family, ckpt = load_reference(checkpoints("clip-llama-bpe"))
    manifest = open_bundle(fp32_bundle).manifest
    layout = media_layout(manifest)
    tiles = [layout.prepare(x).tiles for case in cases_for("image") for x in case_inputs(case, manifest)]
    np.savez(folder / "inputs.npz", **{f"{i:02d}": t for i, t in enumerate(tiles)})
    source = folder / "source.onnx.src"
    export_onnx(family.encoder(ckpt), {"pixel_values": torch.from_numpy(np.concatenate(tiles[:2]))}, source,
                "image_features")
    shutil.copyfile(source, folder / "fp32.onnx")
    details = apply_onnx_recipe("int8", source, folder / "mmedge-int8.onnx")
    static = apply_onnx_recipe("int8-static", source, folder / "mmedge-int8-static.onnx", calibration=tiles)
    assert details["reduce_range"] is True and static["reduce_range"] is True
    et_bundle = bundles_with_targets("clip-llama-bpe", ("executorch", "int8"), ("executorch", "fp32"), "Q8_0",
                                      allow_below_floor=True)[0]
    shutil.copyfile(et_bundle / "vision_encoder.int8.pte", folder / "executorch-int8.pte")
    prepared = folder / "prepared.onnx.src"
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    quantize_dynamic(str(prepared), str(folder / "full-range-int8.onnx"), weight_type=QuantType.QInt8,
                     per_channel=True, op_types_to_quantize=["MatMul", "Gemm"])
    return folder


@pytest.mark.skipif(QEMU is None, reason="qemu-x86_64 (Debian's qemu-user, which setup.sh installs as root) emulates "
                                         "the AVX2-only CPU; it is not installed here")
def test_int8_parts_give_the_same_numbers_on_an_avx2_cpu(graphs):
    from mmedge.quantize.recipes import TENSOR_RECIPES

    here, haswell = _run(graphs, emulated=False), _run(graphs, emulated=True)
    for name, recipe in (("mmedge-int8", "int8"), ("mmedge-int8-static", "int8-static")):
        assert haswell[name]["sha256"] == here[name]["sha256"], (name, here[name], haswell[name])
        assert here[name]["cosine"] >= TENSOR_RECIPES[recipe].min_cosine, (name, here[name])
    # XNNPACK's int8 never saturates either; its float steps (activation scales, dequantization)
    # take the CPU's own kernels, so its outputs agree to float rounding, not to the bit.
    a, b = np.load(graphs / "here" / "executorch-int8.npy"), np.load(graphs / "haswell" / "executorch-int8.npy")
    assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max(), np.abs(a - b).max()
    assert abs(here["executorch-int8"]["cosine"] - haswell["executorch-int8"]["cosine"]) < 1e-7
    assert here["executorch-int8"]["cosine"] >= TENSOR_RECIPES["int8"].min_cosine
    # The control: on the emulated AVX2 CPU, full-range weights saturate and fall below the floor,
    # far below what the 7-bit recipe measures there.
    control = haswell["full-range-int8"]["cosine"]
    assert control < TENSOR_RECIPES["int8"].min_cosine < haswell["mmedge-int8"]["cosine"], haswell
