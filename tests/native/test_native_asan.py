"""The sanitizer job: `mmedge-run` built with AddressSanitizer + UndefinedBehaviorSanitizer (and
LeakSanitizer) runs a good bundle to the same tokens as the plain build, then every malformed bundle,
damaged image files (truncated PNG / JPEG, headers claiming 20000² pixels, empty files, text named
.png) and bad prompts: each must end with exit 2 and one `error: MMEDGE_ERR_...` line, and the
sanitizers must report nothing."""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import zlib

import pytest

from .native_cases import BUNDLE_CASES
from .native_helpers import ASAN_CLI, CLI, require_build

SANITIZER_WORDS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer")


def _cli(binary, bundle, *args, timeout=180) -> subprocess.CompletedProcess:
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1"}
    return subprocess.run([str(require_build(binary)), str(bundle), *args, "--threads", "1", "--ctx", "1024"],
                          capture_output=True, text=True, errors="replace", timeout=timeout, env=env)


def _assert_refused(proc, status: str | None = None) -> None:
    assert not any(w in proc.stderr for w in SANITIZER_WORDS), proc.stderr[-4000:]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), line
    if status:
        assert line.startswith(f"error: {status}:"), line


def test_a_good_run_is_clean_and_equal_to_the_plain_build(et_bundle, photos, tmp_path):
    linked = subprocess.run(["ldd", str(require_build(ASAN_CLI))], capture_output=True, text=True).stdout
    assert "libasan" in linked and "libubsan" in linked, "native/build-asan is not a sanitizer build"
    image = tmp_path / "a.png"
    photos["astronaut"].save(image)
    args = ("--image", str(image), "--prompt", "What is this?", "--max-tokens", "16", "--min-tokens", "16", "--exact", "--json")
    sanitized, plain = _cli(ASAN_CLI, et_bundle, *args), _cli(CLI, et_bundle, *args)
    assert sanitized.returncode == 0 and not any(w in sanitized.stderr for w in SANITIZER_WORDS), sanitized.stderr[-4000:]
    assert json.loads(sanitized.stdout)["tokens"] == json.loads(plain.stdout)["tokens"]


@pytest.mark.parametrize("case", BUNDLE_CASES)
def test_malformed_bundles_under_the_sanitizers(et_bundle, tmp_path, case):
    damage, expected = BUNDLE_CASES[case]
    bundle = tmp_path / "bundle"
    shutil.copytree(et_bundle, bundle)
    damage(bundle)
    _assert_refused(_cli(ASAN_CLI, bundle, "--prompt", "Hi", "--max-tokens", "2"), expected)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _image_files(photos, folder):
    png, jpg = folder / "good.png", folder / "good.jpg"
    photos["coffee"].save(png)
    photos["coffee"].save(jpg, quality=90)
    files = {
        "png-truncated": png.read_bytes()[: len(png.read_bytes()) // 3],
        "png-header-cut": png.read_bytes()[:20],
        "jpeg-truncated": jpg.read_bytes()[:200],
        "png-claims-20000x20000": _png_header_only(20000, 20000),
        "png-1x100000": _png_header_only(1, 100000),
        "empty.png": b"",
        "text-named.png": b"this is not an image\n",
        "ppm-claims-huge": b"P6\n100000 100000\n255\n" + b"\0" * 30,
        "ppm-truncated": b"P6\n20 20\n255\n" + b"\0" * 30,
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return list(files)


def test_damaged_image_files_under_the_sanitizers(et_bundle, photos, tmp_path):
    for name in _image_files(photos, tmp_path):
        proc = _cli(ASAN_CLI, et_bundle, "--image", str(tmp_path / name), "--prompt", "What is this?", "--max-tokens", "2")
        _assert_refused(proc)
        assert "image" in proc.stderr, (name, proc.stderr[-500:])
    tiny = tmp_path / "tiny.png"
    photos["coffee"].resize((2, 2)).save(tiny)  # decodes fine; the runtime refuses its size
    _assert_refused(_cli(ASAN_CLI, et_bundle, "--image", str(tiny), "--prompt", "Hi"), "MMEDGE_ERR_IMAGE")


@pytest.mark.parametrize("prompt, extra, status", [
    ("<image> and <image>", ["--max-tokens", "2"], "MMEDGE_ERR_PROMPT"),
    ("word " * 3000, ["--max-tokens", "2"], "MMEDGE_ERR_PROMPT"),
    ("Hi", ["--max-tokens", "5000"], "MMEDGE_ERR_PROMPT"),
    ("Hi", ["--top-p", "0", "--temperature", "1"], "MMEDGE_ERR_INVALID_ARGUMENT"),
], ids=["markers-not-images", "longer-than-context", "tokens-past-context", "top-p-zero"])
def test_bad_prompts_and_parameters_under_the_sanitizers(et_bundle, photos, tmp_path, prompt, extra, status):
    image = tmp_path / "a.png"
    photos["rocket"].save(image)
    _assert_refused(_cli(ASAN_CLI, et_bundle, "--image", str(image), "--prompt", prompt, *extra), status)
