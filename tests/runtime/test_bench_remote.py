"""`mmedge bench --remote` end to end against an OpenSSH server the test starts on loopback: the
bundle and the image are copied to the "device", the worker runs there through ssh with the
device's Python, the JSON comes back; a second run finds the bundle already there."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mmedge.runtime.bench.photo import photo_like
from mmedge.runtime.remote import bundle_id

from ..sshd_server import start_sshd
from .test_bench import validate


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    yield from start_sshd(tmp_path_factory.mktemp("sshd-bench"))


def bench_remote(sshd, bundle, image, out):
    args = [sys.executable, "-m", "mmedge.cli", "bench", str(bundle), "--image", str(image), "--reps", "2", "--warmup", "0",
            "--max-tokens", "4", "--json", str(out), "--quiet", "--remote", sshd.url, "--identity", str(sshd.identity),
            "--remote-python", sys.executable, "--remote-cache", str(sshd.home / "bundles")]
    for option in sshd.options:
        args += ["--ssh-option", option]
    return subprocess.run(args, capture_output=True, text=True, timeout=600)


def test_bench_runs_on_the_device_and_copies_once(sshd, fp32_bundle, tmp_path):
    image = tmp_path / "photo.png"
    photo_like(seed=2, size=(160, 120)).save(image)
    first = bench_remote(sshd, fp32_bundle, image, tmp_path / "a.json")
    assert first.returncode == 0, first.stderr[-3000:]
    report = json.loads((tmp_path / "a.json").read_text())
    validate(report)
    assert report["settings"]["remote"] == sshd.url
    bundle = report["bundles"][0]
    where = str(sshd.home / "bundles" / bundle_id(fp32_bundle))
    assert bundle["remote"] == {"url": sshd.url, "path": where, "copied": True}
    # The worker ran on the device: it opened the copy (hash check included) and read the copied image.
    medium = bundle["inputs"]["media"][0]
    assert (medium["width"], medium["height"]) == (160, 120) and medium["source"] != str(image)
    assert bundle["stages"]["ttft_s"]["n"] == 2 and bundle["stages"]["ttft_s"]["median"] > 0
    assert medium["source"].endswith("/0-photo.png") and not Path(medium["source"]).exists()  # removed after the run
    second = bench_remote(sshd, fp32_bundle, image, tmp_path / "b.json")
    assert second.returncode == 0, second.stderr[-3000:]
    assert json.loads((tmp_path / "b.json").read_text())["bundles"][0]["remote"]["copied"] is False


def test_a_device_without_mmedge_is_a_named_error(sshd, fp32_bundle, tmp_path):
    image = tmp_path / "photo.png"
    photo_like(seed=3, size=(64, 48)).save(image)
    args = [sys.executable, "-m", "mmedge.cli", "bench", str(fp32_bundle), "--image", str(image), "--reps", "1",
            "--max-tokens", "2", "--quiet", "--remote", sshd.url, "--identity", str(sshd.identity),
            "--remote-python", "/usr/bin/false-python-does-not-exist", "--remote-cache", str(sshd.home / "bundles")]
    for option in sshd.options:
        args += ["--ssh-option", option]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "the bench worker failed" in proc.stderr and "false-python" in proc.stderr
