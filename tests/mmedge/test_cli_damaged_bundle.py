"""The CLI on damaged bundles: one line on stderr, exit code 2, no traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .bundle_helpers import flip_byte, part_file, point_part_at, read_manifest_dict, write_manifest_dict


def _corrupt(bundle: Path, how: str) -> str:
    """Damage the bundle; return a fragment the one-line error must contain."""
    if how == "flipped-gguf":
        flip_byte(part_file(bundle, "llm"), 0)
        return "sha256 of llm.F32.gguf"
    if how == "truncated-onnx":
        path = part_file(bundle, "vision_encoder")
        path.write_bytes(path.read_bytes()[:100])
        return "is 100 bytes"
    if how == "no-manifest":
        (bundle / "manifest.json").unlink()
        return "missing"
    if how == "version-99":
        data = read_manifest_dict(bundle)
        data["format_version"] = 99
        write_manifest_dict(bundle, data)
        return "the bundle is version 99"
    if how == "escaping-path":
        point_part_at(bundle, "llm", "/etc/passwd")
        return "'/etc/passwd' must be relative"
    if how == "deep-json":
        (bundle / "manifest.json").write_text("[" * 100_000)
        return "nested too deeply"
    raise AssertionError(how)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "mmedge.cli", *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


@pytest.mark.parametrize("how", ["flipped-gguf", "truncated-onnx", "no-manifest", "version-99", "escaping-path", "deep-json"])
@pytest.mark.parametrize("command", ["inspect", "run"])
def test_cli_on_a_corrupted_bundle(bundle_copy, tmp_path, command, how):
    fragment = _corrupt(bundle_copy, how)
    args = [command, str(bundle_copy)]
    if command == "run":
        image = tmp_path / "img.png"
        from PIL import Image

        Image.new("RGB", (32, 32), (200, 10, 10)).save(image)
        args += ["--image", str(image), "--prompt", "What is this?", "--max-tokens", "4"]
    proc = run_cli(*args)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"mmedge {command}: error: ")
    assert fragment in lines[0]
    assert proc.stdout.strip() == ""


def test_cli_inspect_intact_and_no_hash(bundle_copy):
    """Controls for the test above: the intact copy inspects fine; a flipped byte passes --no-hash."""
    ok = run_cli("inspect", str(bundle_copy))
    assert ok.returncode == 0, ok.stderr
    sha = read_manifest_dict(bundle_copy)["parts"]["llm"]["sha256"]
    assert f"sha256 {sha[:12]}" in ok.stdout
    flip_byte(part_file(bundle_copy, "llm"), 10)
    assert run_cli("inspect", str(bundle_copy)).returncode == 2
    unchecked = run_cli("inspect", "--no-hash", str(bundle_copy))
    assert unchecked.returncode == 0 and f"sha256 {sha[:12]}" in unchecked.stdout
