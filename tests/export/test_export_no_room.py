"""An export that runs out of room (a file-size limit stands in for a full disk: RLIMIT_FSIZE makes
every write past N bytes fail with EFBIG, as ENOSPC would) ends with a named error and exit 2, and
leaves the destination as it was — absent, or the previous complete bundle — with no staging left."""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys

import pytest

from mmedge.bundle import open_bundle

from .export_helpers import staging_leftovers, tree_hashes

PRESET = "clip-llama-bpe"


def _limited(max_bytes: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failing write instead of a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    return apply


# Sizes that stop the export at different files: the first ONNX graph, the GGUF (~600 kB), the
# verified bundle's last writes.
@pytest.mark.parametrize("limit", [4_096, 200_000, 500_000])
@pytest.mark.parametrize("previous", [False, True], ids=["fresh", "over-previous"])
def test_no_room_leaves_no_partial_bundle(checkpoints, fp32_bundle, tmp_path, limit, previous):
    import shutil

    dest = tmp_path / "out" / "bundle"
    dest.parent.mkdir()
    before = None
    if previous:
        shutil.copytree(fp32_bundle, dest)
        before = tree_hashes(dest)
    args = [sys.executable, "-m", "mmedge.cli", "export", str(checkpoints(PRESET)), "-o", str(dest), "--quiet",
            "--threads", "1", "--force"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, preexec_fn=_limited(limit),
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("mmedge export: error:"), proc.stderr[-3000:]
    assert any(m in proc.stderr for m in ("ran out of room", "an I/O error stopped the export", "File too large")), \
        proc.stderr[-3000:]
    assert staging_leftovers(dest.parent) == []
    if previous:
        assert tree_hashes(dest) == before
        open_bundle(dest)
    else:
        assert not dest.exists()
    assert sorted(os.listdir(dest.parent)) == (["bundle"] if previous else [])


def _mount_small_disk(where, size: str) -> bool:
    where.mkdir()
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


# A real full file system: a tmpfs of a few hundred kB (the tiny bundle needs ~1.4 MB).
@pytest.mark.parametrize("size", ["96k", "700k"])
def test_a_full_file_system_leaves_no_partial_bundle(checkpoints, tmp_path, size):
    disk = tmp_path / "disk"
    if not _mount_small_disk(disk, size):
        pytest.skip("mounting a small tmpfs needs root and CAP_SYS_ADMIN, which this machine does not give; "
                    "test_no_room_leaves_no_partial_bundle covers the same path with a file-size limit")
    try:
        dest = disk / "bundle"
        proc = subprocess.run([sys.executable, "-m", "mmedge.cli", "export", str(checkpoints(PRESET)), "-o", str(dest),
                               "--quiet", "--threads", "1"], capture_output=True, text=True, timeout=600,
                              env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert proc.stderr.startswith("mmedge export: error:") and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        assert "ran out of room" in proc.stderr or "No space left" in proc.stderr, proc.stderr[-3000:]
        assert os.listdir(disk) == []  # no bundle, no staging folder
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
