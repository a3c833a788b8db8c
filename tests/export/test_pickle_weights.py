"""--allow-pickle: pickle weights go through torch's weights-only loader into a safetensors copy.
The converted export equals the safetensors one (same tokens, same GGUF tensors); a pickle that
would run code is refused without running it and leaves nothing behind; other bad pickles are
named errors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from mmedge.errors import CheckpointError
from mmedge.export.exporter import ExportConfig, export_bundle

from .export_helpers import staging_leftovers

PRESET = "clip-llama-bpe"


def _pickled_copy(src: Path, dst: Path, shards: int = 1) -> Path:
    """The checkpoint with its safetensors weights re-saved as torch pickles (sharded with an index)."""
    from safetensors.torch import load_file

    dst.mkdir()
    state = {}
    for item in src.iterdir():
        if item.suffix == ".safetensors":
            state.update(load_file(str(item)))
        elif item.is_file() and item.name != "model.safetensors.index.json":
            shutil.copyfile(item, dst / item.name)
    names = sorted(state)
    if shards == 1:
        torch.save(state, dst / "pytorch_model.bin")
        return dst
    weight_map = {}
    for i in range(shards):
        part = {n: state[n] for n in names[i::shards]}
        file = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        torch.save(part, dst / file)
        weight_map.update({n: file for n in part})
    (dst / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return dst


class _RunsCode:
    """Unpickling this would create a file: the classic pickle payload, made harmless."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("shards", [1, 3])
def test_a_converted_pickle_checkpoint_exports_the_same_bundle(checkpoints, bundles, tmp_path, photos, shards):
    from gguf import GGUFReader

    from mmedge.runtime.pipeline import GenerationParams, Pipeline, RuntimeOptions

    folder = _pickled_copy(checkpoints(PRESET), tmp_path / "pickled", shards)
    with pytest.raises(CheckpointError, match="--allow-pickle"):
        export_bundle(ExportConfig(checkpoint=folder, output=tmp_path / "refused"))
    out = tmp_path / "bundle"
    manifest = export_bundle(ExportConfig(checkpoint=folder, output=out, allow_pickle=True))
    assert manifest.verification["passed"] is True
    assert manifest.source["weights"].startswith("pickle, converted") and manifest.source["tensors"] > 10
    assert len(manifest.source["pickle_files"]) == shards
    assert not list(folder.glob("*.safetensors"))  # the user's folder is left as it was

    reference, _ = bundles(PRESET)
    ours = {t.name: bytes(t.data.tobytes()) for t in GGUFReader(str(next(out.glob("*.gguf")))).tensors}
    theirs = {t.name: bytes(t.data.tobytes()) for t in GGUFReader(str(next(reference.glob("*.gguf")))).tensors}
    assert ours == theirs
    params = GenerationParams(max_new_tokens=8, min_new_tokens=8)
    tokens = []
    for bundle in (out, reference):
        pipe = Pipeline(bundle, RuntimeOptions(exact=True, n_ctx=512))
        try:
            tokens.append(pipe.generate([photos["rocket"]], "What is this?", params).tokens)
        finally:
            pipe.close()
    assert tokens[0] == tokens[1] and len(tokens[0]) == 8


def test_a_pickle_that_runs_code_is_refused_without_running(checkpoints, tmp_path):
    folder = _pickled_copy(checkpoints(PRESET), tmp_path / "evil")
    marker = tmp_path / "pwned"
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    state["extra"] = _RunsCode(marker)
    torch.save(state, folder / "pytorch_model.bin")
    out = tmp_path / "bundle"
    with pytest.raises(CheckpointError, match="refused by torch's weights-only loader") as info:
        export_bundle(ExportConfig(checkpoint=folder, output=out, allow_pickle=True))
    assert "could run code" in str(info.value)
    assert not marker.exists() and not out.exists() and staging_leftovers(tmp_path) == []


@pytest.mark.parametrize("payload, expected", [
    (lambda: [torch.zeros(2)], "not a state dict of named tensors"),
    (lambda: {"w": torch.zeros(2), "n": 3}, "not a state dict of named tensors"),
    (None, "refused by torch's weights-only loader"),  # damaged bytes
])
def test_other_bad_pickles_are_named_errors(checkpoints, tmp_path, payload, expected):
    folder = _pickled_copy(checkpoints(PRESET), tmp_path / "bad")
    if payload is None:
        data = (folder / "pytorch_model.bin").read_bytes()
        (folder / "pytorch_model.bin").write_bytes(data[: len(data) // 3])
    else:
        torch.save(payload(), folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=expected):
        export_bundle(ExportConfig(checkpoint=folder, output=tmp_path / "b", allow_pickle=True, verify=False))
    assert not (tmp_path / "b").exists()


def test_an_index_naming_a_missing_shard_is_refused(checkpoints, tmp_path):
    folder = _pickled_copy(checkpoints(PRESET), tmp_path / "sharded", shards=2)
    (folder / "pytorch_model-00002-of-00002.bin").unlink()
    with pytest.raises(CheckpointError, match="names a shard 'pytorch_model-00002-of-00002.bin'"):
        export_bundle(ExportConfig(checkpoint=folder, output=tmp_path / "b", allow_pickle=True, verify=False))


def test_verify_takes_a_pickle_reference_only_when_allowed(checkpoints, bundles, tmp_path, capsys):
    """`mmedge verify --reference` refuses pickle weights by name and, with --allow-pickle, measures
    the bundle against the converted copy: the same numbers as against the safetensors original."""
    from mmedge.cli import main

    import tempfile

    bundle = bundles(PRESET)[0]
    pickled = _pickled_copy(checkpoints(PRESET), tmp_path / "pickled")
    copies = lambda: set(Path(tempfile.gettempdir()).glob("mmedge-safetensors-*"))  # noqa: E731
    before = copies()
    assert main(["verify", str(bundle), "--reference", str(pickled), "--tokens", "4", "--json"]) == 2
    assert "--allow-pickle" in capsys.readouterr().err
    reports = []
    for reference, extra in ((pickled, ["--allow-pickle"]), (checkpoints(PRESET), [])):
        assert main(["verify", str(bundle), "--reference", str(reference), "--tokens", "4", "--json", *extra]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    converted, original = reports
    assert converted["passed"] and converted["reference"] == str(pickled)
    for role in ("vision_encoder", "projector"):
        assert converted[role]["max_abs_diff"] == original[role]["max_abs_diff"]
        assert converted[role]["cosine"] > 0.9999
    assert copies() == before  # the converted copy is gone
