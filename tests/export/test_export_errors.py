"""Export refusals: a named error before any heavy work, and nothing written.

Interrupted exports are in test_export_interrupted.py."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mmedge.bundle import open_bundle
from mmedge.errors import CheckpointError, OutputPathError, RecipeError, UnsupportedArchitectureError
from mmedge.export.exporter import ExportConfig, export_bundle
from mmedge.export.families import registered_families

from .export_helpers import staging_leftovers, tree_hashes

PRESET = "clip-llama-bpe"


# -- helpers ----------------------------------------------------------------------------------
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


def refuse(exc_type, cfg: ExportConfig) -> str:
    """Run export_bundle, expect exactly `exc_type` before any family loads the weights (every
    registered family's `load` raises meanwhile: a fact, where a time limit would measure the CPU),
    and nothing written."""
    from mmedge.export.families.base import registered_families

    parent = Path(cfg.output).parent
    before = sorted(os.listdir(parent)) if parent.is_dir() else None

    def loaded(self, path):
        raise AssertionError(f"{type(self).__name__} loaded the weights before refusing")

    with pytest.MonkeyPatch.context() as patch:
        for family in registered_families().values():
            patch.setattr(family, "load", loaded)
        with pytest.raises(exc_type) as info:
            export_bundle(cfg)
    assert type(info.value) is exc_type, f"{type(info.value).__name__}: {info.value}"
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
# Every architecture any family registers, as the refusal lists them.
REGISTERED = ", ".join(sorted(a for f in registered_families().values() for a in f.info.architectures))


def test_unsupported_architecture_fails_fast(ckpt_copy, tmp_path, monkeypatch):
    edit_config(ckpt_copy, architectures=["MllamaForConditionalGeneration"])
    # If the exporter went on to load weights (with the one family there is), this would show it.
    import mmedge.export.families.llava as llava_mod

    monkeypatch.setattr(llava_mod, "load_pretrained", lambda *a, **k: pytest.fail("weights were loaded"))
    msg = refuse(UnsupportedArchitectureError, ExportConfig(checkpoint=ckpt_copy, output=tmp_path / "out" / "b"))
    assert "'MllamaForConditionalGeneration' is not supported" in msg
    assert f"registered architectures: {REGISTERED}." in msg and "LlavaForConditionalGeneration" in REGISTERED
    assert "mmedge families" in msg
    assert not (tmp_path / "out").exists()


def test_unsupported_architecture_cli(ckpt_copy, tmp_path):
    edit_config(ckpt_copy, architectures=["MllamaForConditionalGeneration"])
    proc = run_cli("export", str(ckpt_copy), "-o", str(tmp_path / "b"), "--quiet")
    assert_one_line_error(proc, "export", f"registered architectures: {REGISTERED}")
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
    with pytest.raises(RecipeError) as info:
        ExportConfig(checkpoint=tmp_path / "nowhere", output=tmp_path / "b", **kwargs)
    assert fragment in str(info.value) and choices in str(info.value)
    assert os.listdir(tmp_path) == []


def test_unknown_precision_cli(ckpt, tmp_path):
    proc = run_cli("export", str(ckpt), "-o", str(tmp_path / "b"), "--llm", "Q2_Z", "--quiet")
    assert_one_line_error(proc, "export", "--llm 'Q2_Z': unknown GGUF type")
    assert os.listdir(tmp_path) == []
