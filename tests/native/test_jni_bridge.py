"""The Android demo's JNI bridge (android_demo/app/src/main/cpp/mmedge_jni.cpp + MmedgeBridge.java),
built for the host and driven from the host JVM (JDK 17: javac + java) exactly as the app calls
it: the same greedy tokens and text as the Python runtime, streamed through the listener, and a
refused bundle as a MmedgeException carrying the C status name."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from mmedge.runtime.pipeline import GenerationParams, Pipeline, RuntimeOptions

from .native_helpers import BUILD, REPO, require_build

N = 16
DEMO = REPO / "android_demo"


@pytest.fixture(scope="module")
def java_classes(tmp_path_factory):
    if not shutil.which("javac") or not shutil.which("java"):
        pytest.fail("javac and java (JDK 17) are needed for the JNI bridge test; install openjdk-17-jdk-headless")
    out = tmp_path_factory.mktemp("classes")
    sources = [DEMO / "app/src/main/java/org/mmedge/demo/MmedgeBridge.java", DEMO / "host_test/HostCheck.java"]
    proc = subprocess.run(["javac", "-d", str(out), *map(str, sources)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    return out


def _java(classes, *args) -> subprocess.CompletedProcess:
    require_build(BUILD / "libmmedge_jni.so")
    return subprocess.run(["java", f"-Djava.library.path={BUILD}", "-cp", str(classes), "HostCheck", *map(str, args)],
                          capture_output=True, text=True, encoding="utf-8", timeout=180)


def test_the_bridge_gives_the_python_runtimes_tokens(java_classes, et_bundle, photos, tmp_path):
    images = [photos["astronaut"].convert("RGB"), photos["coffee"].convert("RGB")]
    args = []
    for i, image in enumerate(images):
        raw = tmp_path / f"{i}.rgb"
        raw.write_bytes(image.tobytes())
        args += [raw, image.width, image.height]
    prompt = "Compare <image> and <image>."
    pipe = Pipeline(et_bundle, RuntimeOptions(threads=1, n_ctx=1024))
    try:
        expected = pipe.generate(images, prompt, GenerationParams(max_new_tokens=N))
    finally:
        pipe.close()
    proc = _java(java_classes, et_bundle, N, prompt, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["tokens"] == expected.tokens and out["streamed"] == expected.tokens
    assert out["text"] == expected.text and out["marker"] == "<image>"


def test_a_refused_bundle_is_a_java_exception_with_the_status(java_classes, tmp_path):
    proc = _java(java_classes, tmp_path / "nowhere", N, "Hi")
    assert proc.returncode == 2 and json.loads(proc.stdout)["error"] == "MMEDGE_ERR_MANIFEST"


def test_a_short_pixel_array_is_refused_before_it_is_read(java_classes, et_bundle, tmp_path):
    raw = tmp_path / "short.rgb"
    raw.write_bytes(b"\0" * 100)  # 20x20 RGB needs 1200
    proc = _java(java_classes, et_bundle, N, "What is this?", raw, 20, 20)
    assert proc.returncode == 2 and json.loads(proc.stdout)["error"] == "MMEDGE_ERR_IMAGE"
