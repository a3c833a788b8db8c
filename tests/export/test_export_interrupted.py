"""Interrupted exports: SIGKILL at any stage never leaves something at the destination that is
not a complete bundle (absent, or the previous complete bundle)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mmedge.bundle import STAGING_PREFIX, open_bundle

from .export_helpers import staging_leftovers, tree_hashes

PRESET = "clip-llama-bpe"


@pytest.fixture
def ckpt(checkpoints) -> Path:
    return checkpoints(PRESET)


def _stage_reached(parent: Path, dest_name: str, stage: str) -> bool:
    for staging in parent.glob(f"{STAGING_PREFIX}{dest_name}-*"):
        names = {p.name for p in staging.iterdir()} if staging.is_dir() else set()
        if stage == "staging":
            return True
        if stage == "onnx" and any(n.endswith(".onnx") for n in names):
            return True
        if stage == "verifying" and "manifest.json" in names:
            return True
    return False


def export_and_kill(ckpt: Path, dest: Path, stage: str, force: bool, log: Path) -> dict:
    """Start `mmedge export`, SIGKILL it as soon as `stage` is visible on disk; return what was seen."""
    args = [sys.executable, "-m", "mmedge.cli", "export", str(ckpt), "-o", str(dest), "--quiet", "--threads", "1"]
    if force:
        args.append("--force")
    env = dict(os.environ, OMP_NUM_THREADS="1")  # the machine is shared; one core is enough for a tiny model
    t0 = time.monotonic()
    with open(log, "wb") as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=env)
        try:
            while not _stage_reached(dest.parent, dest.name, stage):
                assert proc.poll() is None, f"export ended (rc {proc.returncode}) before stage {stage!r}: {log.read_text()[-2000:]}"
                assert time.monotonic() - t0 < 240, f"stage {stage!r} not reached in 240 s"
                time.sleep(0.02)
            staged = {p.name: sorted(q.name for q in p.iterdir()) for p in dest.parent.glob(f"{STAGING_PREFIX}{dest.name}-*")}
            os.kill(proc.pid, signal.SIGKILL)
            rc = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
    return {"rc": rc, "staged": staged, "seconds": time.monotonic() - t0}


def assert_only_staging_beside(dest: Path, allowed: set[str]) -> None:
    for name in os.listdir(dest.parent):
        assert name in allowed or name.startswith(STAGING_PREFIX), f"unexpected {name!r} beside the destination"


@pytest.mark.parametrize(
    "stage,previous",
    [("staging", False), ("onnx", True), ("verifying", True)],
    ids=["loading-fresh-dest", "onnx-written-over-previous", "verifying-over-previous"],
)
def test_sigkill_during_export(ckpt, fp32_bundle, tmp_path, stage, previous):
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "bundle"
    before = None
    if previous:
        shutil.copytree(fp32_bundle, dest)
        before = tree_hashes(dest)
        old_manifest = open_bundle(dest).manifest
    seen = export_and_kill(ckpt, dest, stage, force=previous, log=tmp_path / "export.log")
    assert seen["rc"] == -signal.SIGKILL
    assert seen["staged"], "no staging folder was seen"
    if stage == "verifying":
        # At this stage the staging folder holds a full bundle -- but beside, never at, the destination.
        files = next(iter(seen["staged"].values()))
        assert "manifest.json" in files and any(f.endswith(".gguf") for f in files)
    if previous:
        assert tree_hashes(dest) == before, "the previous bundle was changed by an interrupted export"
        reopened = open_bundle(dest)
        assert {r: p.sha256 for r, p in reopened.manifest.parts.items()} == {r: p.sha256 for r, p in old_manifest.parts.items()}
    else:
        assert not dest.exists(), f"an interrupted export left {sorted(os.listdir(dest))} at the destination"
    # Leftovers (nothing can clean up after SIGKILL) are hidden staging folders of this destination only.
    assert_only_staging_beside(dest, {dest.name} if previous else set())
    assert all(name.startswith(f"{STAGING_PREFIX}bundle-") for name in staging_leftovers(out))


COMMIT_CHILD = textwrap.dedent(
    """
    import os, shutil, signal, sys
    from pathlib import Path
    import mmedge.bundle as bundle_mod
    from mmedge.bundle import BundleWriter, open_bundle

    src, dest, kill_at = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    manifest = open_bundle(src).manifest
    manifest.created_by = "replacement"
    writer = BundleWriter(dest, overwrite=True)
    for part in manifest.parts.values():
        shutil.copyfile(src / part.file, writer.path(part.file))

    # SIGKILL before the kill_at-th line that mmedge/bundle.py executes inside commit().
    count = 0
    skip = {"_fsync_tree", "sha256_file"}

    def tracer(frame, event, arg):
        if frame.f_code.co_filename != bundle_mod.__file__ or frame.f_code.co_name in skip:
            return None
        return local

    def local(frame, event, arg):
        global count
        if event == "line":
            count += 1
            if count == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        return local

    sys.settrace(tracer)
    writer.commit(manifest)
    sys.settrace(None)
    print("COMMITTED", count)
    """
)


def test_sigkill_at_every_line_of_commit(fp32_bundle, tmp_path):
    """Replacing a bundle: whatever line of the commit the process dies on, the destination holds a
    complete bundle -- the previous one or the new one, never nothing and never a mix."""
    script = tmp_path / "commit_child.py"
    script.write_text(COMMIT_CHILD)
    previous = tmp_path / "previous"
    shutil.copytree(fp32_bundle, previous)
    manifest = json.loads((previous / "manifest.json").read_text())
    manifest["created_by"] = "previous"
    (previous / "manifest.json").write_text(json.dumps(manifest))
    previous_hashes = tree_hashes(previous)

    outcomes = []
    kill_at = 1
    while True:
        work = tmp_path / f"run{kill_at}"
        work.mkdir()
        dest = work / "bundle"
        shutil.copytree(previous, dest)
        proc = subprocess.run([sys.executable, str(script), str(fp32_bundle), str(dest), str(kill_at)],
                              capture_output=True, text=True, timeout=60)
        done = proc.returncode == 0
        if not done:
            assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
        assert dest.is_dir(), f"killed at line {kill_at} of commit: no bundle at the destination ({os.listdir(work)})"
        assert not dest.is_symlink()
        who = open_bundle(dest).manifest.created_by
        assert who in ("previous", "replacement")
        if who == "previous":
            assert tree_hashes(dest) == previous_hashes
        else:
            assert {k: v for k, v in tree_hashes(dest).items() if k != "manifest.json"} == {
                k: v for k, v in previous_hashes.items() if k != "manifest.json"}
        assert_only_staging_beside(dest, {"bundle"})
        outcomes.append(who)
        if done:
            assert proc.stdout.startswith("COMMITTED")
            assert who == "replacement" and staging_leftovers(work) == []
            break
        kill_at += 1
        assert kill_at < 200, "commit() never completed"
    # Old, then new: once replaced, never back.
    assert outcomes[0] == "previous" and outcomes[-1] == "replacement"
    assert outcomes == sorted(outcomes)  # "previous" < "replacement"


@pytest.mark.parametrize("atomic_exchange", [True, False], ids=["exchange", "two-renames-fallback"])
def test_commit_publishes_a_readable_bundle_and_leaves_nothing_behind(fp32_bundle, tmp_path, monkeypatch, atomic_exchange):
    import mmedge.bundle as bundle_mod
    from mmedge.bundle import BundleWriter

    if not atomic_exchange:
        monkeypatch.setattr(bundle_mod, "_exchange", lambda a, b: False)
    manifest = open_bundle(fp32_bundle).manifest
    expected_files = sorted([p.file for p in manifest.parts.values()] + ["manifest.json"])
    old_umask = os.umask(0o022)
    try:
        dest = tmp_path / "bundle"
        for round_ in ("new", "replace"):
            manifest.created_by = round_
            writer = BundleWriter(dest, overwrite=True)
            assert writer.staging.stat().st_mode & 0o777 == 0o700  # private while partial
            for part in manifest.parts.values():
                shutil.copyfile(fp32_bundle / part.file, writer.path(part.file))
            writer.commit(manifest)
            # Published like any folder the user makes (0755 under umask 022), not mkdtemp's 0700.
            assert dest.stat().st_mode & 0o777 == 0o755
            assert sorted(os.listdir(dest)) == expected_files
            assert open_bundle(dest).manifest.created_by == round_
            assert staging_leftovers(tmp_path) == []
    finally:
        os.umask(old_umask)
