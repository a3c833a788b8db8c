"""Staging folders left by killed exports are removed by the next export to the same name;
folders of live exports and of other names are left alone."""
from __future__ import annotations

import os
import subprocess
import sys

from mmedge.bundle import OWNER_FILE, STAGING_PREFIX, BundleWriter


def _staging(parent, name, pid):
    folder = parent / f"{STAGING_PREFIX}{name}-abc{pid}"
    folder.mkdir()
    (folder / OWNER_FILE).write_text(str(pid))
    (folder / "vision_encoder.fp32.onnx").write_bytes(b"partial")
    return folder


def test_stale_staging_is_removed_live_is_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = _staging(tmp_path, "bundle", dead.pid)
    live = _staging(tmp_path, "bundle", os.getpid())
    other = _staging(tmp_path, "another", dead.pid)
    with BundleWriter(tmp_path / "bundle") as writer:
        assert (writer.staging / OWNER_FILE).read_text() == str(os.getpid())
    assert not stale.exists()
    assert live.exists() and other.exists()
    assert not writer.staging.exists()  # aborted: removed on leaving the block


def test_owner_file_does_not_reach_the_bundle(tmp_path, fp32_bundle):
    from mmedge.bundle import read_manifest

    manifest = read_manifest(fp32_bundle)
    assert not (fp32_bundle / OWNER_FILE).exists()
    with BundleWriter(tmp_path / "b") as writer:
        (writer.path("x.txt")).write_text("x")
        writer.commit(manifest)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["manifest.json", "x.txt"]
