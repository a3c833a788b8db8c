"""Export refusals (a named error before any heavy work) and interrupted exports (SIGKILL at any
stage never leaves something at the destination that is not a complete bundle)."""
from __future__ import annotations

import hashlib
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
from mmedge.errors import CheckpointError, OutputPathError, RecipeError, UnsupportedArchitectureError
from mmedge.export.exporter import ExportConfig, export_bundle

PRESET = "clip-llama-bpe"


# -- helpers ----------------------------------------------------------------------------------
def tree_hashes(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file (symlinks not followed), plus folders as 'dir'."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            out[rel] = "symlink:" + os.readlink(path)
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def staging_leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(STAGING_PREFIX))


@pytest.fixture
def ckpt(checkpoints) -> Path:
    return checkpoints(PRESET)


@pytest.fixture
def ckpt_copy(ckpt, tmp_path) -> Path:
    dst = tmp_path / "ckpt"
    shutil.copytree(ckpt, dst)
    return dst


def edit_config(ckpt: Path, **changes) -> None:
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg.update(changes)
    (ckpt / "config.json").write_text(json.dumps(cfg))


def refuse(exc_type, cfg: ExportConfig, max_seconds: float = 5.0) -> str:
    """Run export_bundle, expect exactly `exc_type` within `max_seconds`, and nothing written."""
    parent = Path(cfg.output).parent
    before = sorted(os.listdir(parent)) if parent.is_dir() else None
    t0 = time.perf_counter()
    with pytest.raises(exc_type) as info:
        export_bundle(cfg)
    elapsed = time.perf_counter() - t0
    assert type(info.value) is exc_type, f"{type(info.value).__name__}: {info.value}"
    assert elapsed < max_seconds, f"took {elapsed:.1f}s: the refusal came after heavy work"
    if before is not None and parent.is_dir():
        assert sorted(os.listdir(parent)) == before, "the refused export left something behind"
    return str(info.value)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmedge.cli", *args], capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, command: str, fragment: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"mmedge {command}: error: ") and fragment in lines[0]


# -- the checkpoint ---------------------------------------------------------------------------
def test_unsupported_architecture_fails_fast(ckpt_copy, tmp_path, monkeypatch):
    edit_config(ckpt_copy, architectures=["MllamaForConditionalGeneration"])
    # If the exporter went on to load weights (with the one family there is), this would show it.
    import mmedge.export.families.llava as llava_mod

    monkeypatch.setattr(llava_mod, "load_pretrained", lambda *a, **k: pytest.fail("weights were loaded"))
    msg = refuse(UnsupportedArchitectureError, ExportConfig(checkpoint=ckpt_copy, output=tmp_path / "out" / "b"))
    assert "'MllamaForConditionalGeneration' is not supported" in msg
    assert "registered architectures: LlavaForConditionalGeneration" in msg
    assert "mmedge families" in msg
    assert not (tmp_path / "out").exists()


def test_unsupported_architecture_cli(ckpt_copy, tmp_path):
    edit_config(ckpt_copy, architectures=["MllamaForConditionalGeneration"])
    proc = run_cli("export", str(ckpt_copy), "-o", str(tmp_path / "b"), "--quiet")
    assert_one_line_error(proc, "export", "registered architectures: LlavaForConditionalGeneration")
    assert not (tmp_path / "b").exists() and staging_leftovers(tmp_path) == []


IMPORTS_CHILD = textwrap.dedent(
    """
    import sys
    from mmedge.cli import main
    rc = main(["export", sys.argv[1], "-o", sys.argv[2], "--quiet"])
    print("RESULT", rc, sorted(m for m in ("torch", "transformers", "onnx", "gguf") if m in sys.modules))
    """
)


def test_cli_refusal_imports_no_torch(ckpt_copy, tmp_path):
    edit_config(ckpt_copy, architectures=["MllamaForConditionalGeneration"])
    script = tmp_path / "child.py"
    script.write_text(IMPORTS_CHILD)
    proc = subprocess.run([sys.executable, str(script), str(ckpt_copy), str(tmp_path / "b")],
                          capture_output=True, text=True, timeout=120)
    assert "RESULT 2" in proc.stdout, proc.stderr[-2000:]
    assert "RESULT 2 []" in proc.stdout


@pytest.mark.parametrize(
    "architectures,fragment",
    [(None, "no 'architectures' entry"), ([], "no 'architectures' entry"), ([42], "no 'architectures' entry")],
)
def test_config_without_architectures(ckpt_copy, tmp_path, architectures, fragment):
    cfg = json.loads((ckpt_copy / "config.json").read_text())
    if architectures is None:
        del cfg["architectures"]
    else:
        cfg["architectures"] = architectures
    (ckpt_copy / "config.json").write_text(json.dumps(cfg))
    msg = refuse(CheckpointError, ExportConfig(checkpoint=ckpt_copy, output=tmp_path / "b"))
    assert fragment in msg and "save_pretrained" in msg


def test_folder_without_config_json(ckpt_copy, tmp_path):
    (ckpt_copy / "config.json").unlink()
    msg = refuse(CheckpointError, ExportConfig(checkpoint=ckpt_copy, output=tmp_path / "b"))
    assert f"{ckpt_copy}: no config.json" in msg and "save_pretrained" in msg


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_config_json_unreadable(ckpt_copy, tmp_path, content):
    (ckpt_copy / "config.json").write_text(content)
    msg = refuse(CheckpointError, ExportConfig(checkpoint=ckpt_copy, output=tmp_path / "b"))
    assert "config.json" in msg and ("not JSON" in msg or "expected a JSON object" in msg)


def test_checkpoint_path_is_not_a_folder(tmp_path):
    msg = refuse(CheckpointError, ExportConfig(checkpoint=tmp_path / "nowhere", output=tmp_path / "b"))
    assert "not a folder" in msg and "config.json + *.safetensors" in msg


def test_only_pickle_weights(ckpt, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copyfile(ckpt / "config.json", folder / "config.json")
    # Never unpickled: it is refused by name, before anything reads it.
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not a real pickle")
    msg = refuse(CheckpointError, ExportConfig(checkpoint=folder, output=tmp_path / "b"))
    assert "only pickle weights (pytorch_model.bin)" in msg
    assert "safetensors" in msg and "safe_serialization=True" in msg


def test_no_weights_at_all(ckpt, tmp_path):
    folder = tmp_path / "noweights"
    folder.mkdir()
    shutil.copyfile(ckpt / "config.json", folder / "config.json")
    msg = refuse(CheckpointError, ExportConfig(checkpoint=folder, output=tmp_path / "b"))
    assert "no *.safetensors weights found" in msg


# -- the output path --------------------------------------------------------------------------
def test_output_parent_is_a_regular_file(ckpt, tmp_path):
    blocker = tmp_path / "notadir"
    blocker.write_text("I am a file")
    msg = refuse(OutputPathError, ExportConfig(checkpoint=ckpt, output=blocker / "bundle"))
    assert f"{blocker}: is not a folder" in msg and "choose another output path" in msg
    msg = refuse(OutputPathError, ExportConfig(checkpoint=ckpt, output=blocker / "deeper" / "bundle"))
    assert "cannot create the folder" in msg
    assert blocker.read_text() == "I am a file"


def test_output_is_a_regular_file(ckpt, tmp_path):
    target = tmp_path / "bundle"
    target.write_text("precious")
    for overwrite in (False, True):
        msg = refuse(OutputPathError, ExportConfig(checkpoint=ckpt, output=target, overwrite=overwrite))
        assert "exists and is not a folder" in msg
    assert target.read_text() == "precious"


@pytest.mark.parametrize("target_kind", ["empty-dir", "bundle", "dangling"])
def test_output_is_a_symlink(ckpt, fp32_bundle, tmp_path, target_kind):
    target = tmp_path / "real"
    if target_kind == "empty-dir":
        target.mkdir()
    elif target_kind == "bundle":
        shutil.copytree(fp32_bundle, target)
    link = tmp_path / "link"
    link.symlink_to(target)
    before = tree_hashes(target) if target.exists() else None
    for overwrite in (False, True):
        msg = refuse(OutputPathError, ExportConfig(checkpoint=ckpt, output=link, overwrite=overwrite))
        assert f"{link}: is a symlink" in msg and "give a real path" in msg
    assert link.is_symlink()
    assert (tree_hashes(target) if target.exists() else None) == before


def test_existing_bundle_without_overwrite(ckpt, fp32_bundle, tmp_path):
    dest = tmp_path / "bundle"
    shutil.copytree(fp32_bundle, dest)
    before = tree_hashes(dest)
    msg = refuse(OutputPathError, ExportConfig(checkpoint=ckpt, output=dest))
    assert f"{dest}: a bundle is already there" in msg and "--force" in msg
    assert tree_hashes(dest) == before
    open_bundle(dest)
    assert staging_leftovers(tmp_path) == []
    # The CLI says the same in one line.
    assert_one_line_error(run_cli("export", str(ckpt), "-o", str(dest), "--quiet"), "export", "pass --force")
    assert tree_hashes(dest) == before


def test_existing_folder_that_is_not_a_bundle(ckpt, tmp_path):
    dest = tmp_path / "documents"
    dest.mkdir()
    (dest / "thesis.tex").write_text("\\begin{document}")
    before = tree_hashes(dest)
    for overwrite in (False, True):  # --force replaces bundles only
        msg = refuse(OutputPathError, ExportConfig(checkpoint=ckpt, output=dest, overwrite=overwrite))
        assert "is not empty and is not a bundle; refusing to replace it" in msg
    assert tree_hashes(dest) == before


# -- precisions -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,fragment,choices",
    [
        (dict(encoder="int3"), "--encoder 'int3': unknown precision", "['fp32', 'fp16', 'int8', 'int8-static', 'int4', 'int4-palette']"),
        (dict(projector="fp8"), "--projector 'fp8': unknown precision", "['fp32', 'fp16', 'int8', 'int8-static', 'int4', 'int4-palette']"),
        (dict(llm="Q2_Z"), "--llm 'Q2_Z': unknown GGUF type", "'Q4_K_M'"),
        (dict(llm="f32"), "--llm 'f32': unknown GGUF type", "'F32'"),
        (dict(encoder="FP32"), "--encoder 'FP32'", "'fp32'"),
    ],
)
def test_unknown_precision_is_refused_by_the_config(tmp_path, kwargs, fragment, choices):
    # The checkpoint need not even exist: the config refuses first.
    t0 = time.perf_counter()
    with pytest.raises(RecipeError) as info:
        ExportConfig(checkpoint=tmp_path / "nowhere", output=tmp_path / "b", **kwargs)
    assert time.perf_counter() - t0 < 1.0
    assert fragment in str(info.value) and choices in str(info.value)
    assert os.listdir(tmp_path) == []


def test_unknown_precision_cli(ckpt, tmp_path):
    proc = run_cli("export", str(ckpt), "-o", str(tmp_path / "b"), "--llm", "Q2_Z", "--quiet")
    assert_one_line_error(proc, "export", "--llm 'Q2_Z': unknown GGUF type")
    assert os.listdir(tmp_path) == []


# -- interrupted exports ----------------------------------------------------------------------
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
