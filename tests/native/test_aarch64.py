"""The aarch64 (Raspberry Pi) build: `native/cross/build-aarch64.sh` cross-compiles the native
runtime with Debian's toolchain into a folder to copy to the board; here it runs under qemu-user
on the tiny ExecuTorch bundle and must give the x86-64 build's tokens and text.

Both sides run in exact mode (F32 KV cache, no flash attention): NEON and AVX kernels sum in
other orders, and with an F16 KV cache the logits differ by ~1e-3, enough to move a seeded draw
that falls near a boundary of the cumulative distribution (seen once); in exact mode they differ
by ~1e-6."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from .native_helpers import CLI, REPO, require_build

DIST = REPO / "native" / "build-aarch64" / "dist"
SYSROOT = "/usr/aarch64-linux-gnu"
N = 16

pytestmark = pytest.mark.skipif(
    not (shutil.which("aarch64-linux-gnu-g++") and shutil.which("qemu-aarch64")),
    reason="no aarch64 cross toolchain or qemu-user here: setup.sh installs g++-aarch64-linux-gnu and qemu-user "
           "when it runs as root with apt, then cross-builds native/ (native/cross/build-aarch64.sh)")


def _ppm(image, path):
    image = image.convert("RGB")
    path.write_bytes(f"P6\n{image.width} {image.height}\n255\n".encode() + image.tobytes())
    return path


def _run(command, bundle, *args):
    return subprocess.run([*command, str(bundle), *map(str, args)], capture_output=True, text=True, errors="replace",
                          timeout=600)


def test_the_arm64_build_is_arm64():
    binary = require_build(DIST / "mmedge-run")
    header = binary.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183  # EM_AARCH64
    assert (DIST / "lib" / "libmmedge.so").exists() and (DIST / "lib" / "libexecutorch.so").exists()


def test_under_qemu_it_gives_the_x86_tokens(et_bundle, photos, tmp_path):
    images = [_ppm(photos["astronaut"], tmp_path / "a.ppm"), _ppm(photos["coffee"], tmp_path / "b.ppm")]
    args = ["--image", images[0], "--image", images[1], "--prompt", "Compare <image> and <image>.", "--max-tokens", N,
            "--min-tokens", N, "--threads", "1", "--ctx", "1024", "--exact", "--json"]
    arm = _run(["qemu-aarch64", "-L", SYSROOT, str(require_build(DIST / "mmedge-run"))], et_bundle, *args)
    x86 = _run([str(require_build(CLI))], et_bundle, *args)
    assert arm.returncode == 0, arm.stderr[-3000:]
    assert x86.returncode == 0, x86.stderr[-3000:]
    arm_out, x86_out = json.loads(arm.stdout), json.loads(x86.stdout)
    assert arm_out["tokens"] == x86_out["tokens"] and len(arm_out["tokens"]) == N
    assert arm_out["text"] == x86_out["text"]


def test_under_qemu_a_bad_bundle_is_refused_by_name(tmp_path):
    proc = _run(["qemu-aarch64", "-L", SYSROOT, str(require_build(DIST / "mmedge-run"))], tmp_path / "nowhere",
                "--prompt", "Hi")
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: MMEDGE_ERR_MANIFEST:")


def test_under_qemu_seeded_sampling_draws_the_x86_tokens(et_bundle, photos, tmp_path):
    """numpy's PCG64 port (128-bit arithmetic) on arm64: the same seeded draws as on x86-64."""
    args = ["--image", _ppm(photos["coffee"], tmp_path / "c.ppm"), "--prompt", "What is this?", "--max-tokens", N,
            "--min-tokens", N, "--temperature", "0.9", "--top-k", "50", "--top-p", "0.95", "--seed", 2**40 + 3,
            "--threads", "1", "--ctx", "1024", "--exact", "--json"]
    arm = _run(["qemu-aarch64", "-L", SYSROOT, str(require_build(DIST / "mmedge-run"))], et_bundle, *args)
    x86 = _run([str(require_build(CLI))], et_bundle, *args)
    assert arm.returncode == 0 and x86.returncode == 0, arm.stderr[-2000:] + x86.stderr[-2000:]
    assert json.loads(arm.stdout)["tokens"] == json.loads(x86.stdout)["tokens"]


def test_under_qemu_the_gguf_check_gives_the_x86_verdicts(tmp_path):
    from ..gguf_builder import GgufSpec
    from ..gguf_cases import SPEC_CASES

    paths = [tmp_path / "valid.gguf"]
    paths[0].write_bytes(GgufSpec().build())
    for case, spec, _ in SPEC_CASES:
        paths.append(tmp_path / f"{case}.gguf")
        paths[-1].write_bytes(spec.build())
    arm = subprocess.run(["qemu-aarch64", "-L", SYSROOT, str(require_build(DIST / "mmedge-gguf-check")), *map(str, paths)],
                         capture_output=True, text=True, timeout=600)
    x86 = subprocess.run([str(require_build(CLI.parent / "mmedge-gguf-check")), *map(str, paths)], capture_output=True,
                         text=True, timeout=600)
    assert arm.returncode == x86.returncode == 2
    assert arm.stdout == x86.stdout and arm.stdout.startswith("ok\t") and arm.stdout.count("\nrefused\t") == len(SPEC_CASES)
