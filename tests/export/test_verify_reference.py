"""Verification never crashes on the PyTorch side: whatever transformers raises while computing the
reference is a VerificationError naming the step (exit 2 from the CLI, no traceback), and the
reference decodes with its KV cache whatever the checkpoint's `use_cache` says (transformers'
testers save `use_cache: false`)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from mmedge.errors import VerificationError

from ..verification_checks import assert_end_to_end_matches

FAILING_GENERATE = """
import sys
from transformers import LlavaForConditionalGeneration


def broken(self, *args, **kwargs):
    raise IndexError("index 7 is out of bounds for dimension 0 with size 7")


LlavaForConditionalGeneration.generate = broken
from mmedge.cli import main

sys.exit(main(sys.argv[1:]))
"""


def test_a_failing_reference_is_a_named_error(checkpoints, tmp_path, monkeypatch):
    from transformers import LlavaForConditionalGeneration

    from mmedge.export.exporter import ExportConfig, export_bundle

    def broken(self, *args, **kwargs):
        raise IndexError("index 7 is out of bounds for dimension 0 with size 7")

    monkeypatch.setattr(LlavaForConditionalGeneration, "generate", broken)
    with pytest.raises(VerificationError, match=r"while generating with transformers \(one image.*IndexError: index 7"):
        export_bundle(ExportConfig(checkpoint=checkpoints("clip-llama-bpe"), output=tmp_path / "b"))
    assert not (tmp_path / "b").exists()


def test_the_cli_says_so_without_a_traceback(checkpoints, tmp_path):
    out = tmp_path / "b"
    proc = subprocess.run([sys.executable, "-c", FAILING_GENERATE, "export", str(checkpoints("clip-llama-bpe")), "-o",
                           str(out), "--quiet"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "the PyTorch reference failed while generating with transformers" in proc.stderr
    assert "--no-verify" in proc.stderr and "Traceback" not in proc.stderr and not out.exists()


@pytest.mark.parametrize("preset", ["idefics3-llama", "clip-llama-bpe"])
def test_use_cache_false_checkpoints_verify(checkpoints, tmp_path, preset):
    from mmedge.export.exporter import ExportConfig, export_bundle

    ckpt = tmp_path / "ckpt"
    shutil.copytree(checkpoints(preset), ckpt)
    for name, path in (("config.json", ()), ("config.json", ("text_config",)), ("generation_config.json", ())):
        data = json.loads((ckpt / name).read_text())
        target = data
        for key in path:
            target = target[key]
        target["use_cache"] = False
        (ckpt / name).write_text(json.dumps(data))
    m = export_bundle(ExportConfig(checkpoint=ckpt, output=tmp_path / "b"))
    assert m.verification["passed"]
    assert_end_to_end_matches(m.verification)
