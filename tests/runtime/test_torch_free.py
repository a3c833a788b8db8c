"""The runtime never imports torch, nor any package only the export extra installs: run a whole
generation where importing them raises."""
from __future__ import annotations

import json
import subprocess
import sys

# Makes torch & co. unimportable in the process that runs it first (test_bench runs the bench worker after it).
IMPORT_BLOCKER = r'''
import sys, importlib.abc
# torch, and every package only the export extra installs: the light runtime install has none of them
# (onnx is in the runtime extra: its checker vets every ONNX part before onnxruntime loads it).
FORBIDDEN = ("torch", "transformers", "onnxscript", "gguf", "safetensors", "sentencepiece", "executorch",
             "torchao", "coremltools", "tokenizers")
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            raise ImportError(f"{name} is forbidden in the runtime")
sys.meta_path.insert(0, NoTorch())
'''
BLOCKER = IMPORT_BLOCKER + r'''
import json
from mmedge.runtime.pipeline import Pipeline, GenerationParams, RuntimeOptions
from mmedge.export.verify_inputs import synthetic_photo
pipe = Pipeline(sys.argv[1], RuntimeOptions(exact=True, n_ctx=1024))
r = pipe.generate([synthetic_photo(90, 70, seed=3)], "What is this?", GenerationParams(max_new_tokens=12, min_new_tokens=12))
print(json.dumps({"tokens": r.tokens, "torch_loaded": any(m.split(".")[0] in FORBIDDEN for m in sys.modules)}))
'''


def check_runs_without_torch(pipe, bundle_dir) -> None:
    """The bundle generates in a subprocess where torch & co. are unimportable, and its tokens equal
    `pipe`'s (the same bundle in this process). Every family's parity file calls it for its bundle."""
    from mmedge.export.verify_inputs import synthetic_photo
    from mmedge.runtime.pipeline import GenerationParams

    proc = subprocess.run([sys.executable, "-c", BLOCKER, str(bundle_dir)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["torch_loaded"] is False
    expected = pipe.generate([synthetic_photo(90, 70, seed=3)], "What is this?",
                             GenerationParams(max_new_tokens=12, min_new_tokens=12)).tokens
    assert out["tokens"] == expected and len(expected) == 12


def test_runtime_runs_without_torch(fp32_bundle, pipeline):
    check_runs_without_torch(pipeline, fp32_bundle)
