"""A llama.cpp mmproj for a LLaVA-OneVision / LLaVA-NeXT checkpoint, through llama.cpp's legacy converter.

`convert_hf_to_gguf.py --mmproj` does not map these architectures. llama.cpp documents a route for
HF-format LLaVA-NeXT checkpoints (docs/multimodal/granitevision.md): split out the vision tower and
the projector, write a vision config with the grid pinpoints, and run
`tools/mtmd/legacy-models/convert_image_encoder_to_gguf.py`. This does those steps, and runs the
converter under transformers 5, whose `SiglipVisionModel` no longer has the `.vision_model` level
the script reaches for (it was written for transformers 4.x), by wrapping the loaded tower.

libmtmd runs the result as llava-1.6 ("llava-uhd") slices: the overview tile and every grid tile
at full token count, without OneVision's unpadding, `image_newline` rows or anyres_max_9 pooling.
Use it to time the encoder per tile, not to compare whole prompts (see benchmarks/BASELINES.md).

    python -m benchmarks.baselines.legacy_mmproj CHECKPOINT OUT_DIR --llama-cpp LLAMA_CPP_SRC [--f16]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

# Runs inside the converter's process: the tower loaded with a `.vision_model` level.
_SHIM = """
import runpy, sys, torch, transformers
class _Wrap(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.vision_model = m
_orig = transformers.SiglipVisionModel.from_pretrained.__func__
transformers.SiglipVisionModel.from_pretrained = classmethod(lambda cls, path, **kw: _Wrap(_orig(cls, path, **kw)))
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def split_vision_parts(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """The tower as a SiglipVisionModel folder (config with the pinpoints) + `llava.projector`."""
    import torch

    from mmedge.export.checkpoint import architecture_of
    from mmedge.export.families import family_for_architecture

    out = Path(out_dir)
    family = family_for_architecture(architecture_of(checkpoint))
    ckpt = family.load(str(checkpoint))
    model = ckpt.model.model
    if type(model.vision_tower).__name__ != "SiglipVisionModel":
        raise ValueError(f"{checkpoint}: the legacy route here takes SigLIP towers, not {type(model.vision_tower).__name__}")
    model.vision_tower.save_pretrained(out)
    projector = {f"multi_modal_projector.{k}": v.contiguous() for k, v in model.multi_modal_projector.state_dict().items()}
    projector["image_newline"] = model.image_newline.detach().clone()
    torch.save(projector, out / "llava.projector")  # the converter torch.loads this file (our own tensors)
    config = json.loads((out / "config.json").read_text())
    config.update(image_grid_pinpoints=ckpt.config.image_grid_pinpoints, mm_patch_merge_type="spatial_unpad",
                  vision_feature_layer=ckpt.config.vision_feature_layer, projection_dim=0)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def legacy_mmproj(checkpoint: str | Path, out_dir: str | Path, llama_cpp: str | Path, f16: bool = False) -> Path:
    """Write `out_dir/mmproj-model-{f32,f16}.gguf` and return its path."""
    llama_cpp = Path(llama_cpp)
    out = split_vision_parts(checkpoint, out_dir)
    script = llama_cpp / "tools/mtmd/legacy-models/convert_image_encoder_to_gguf.py"
    args = [sys.executable, "-c", _SHIM, str(script), "-m", str(out), "--llava-projector", str(out / "llava.projector"),
            "--output-dir", str(out), "--clip-model-is-vision", "--clip-model-is-siglip",
            "--image-mean", "0.5", "0.5", "0.5", "--image-std", "0.5", "0.5", "0.5", *([] if f16 else ["--use-f32"])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(llama_cpp / "gguf-py"), os.environ.get("PYTHONPATH", "")])}
    subprocess.run(args, check=True, env=env, cwd=script.parent, capture_output=True)
    return out / f"mmproj-model-{'f16' if f16 else 'f32'}.gguf"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--llama-cpp", required=True, help="llama.cpp's source folder (has tools/mtmd/legacy-models)")
    ap.add_argument("--f16", action="store_true")
    args = ap.parse_args(argv)
    print(legacy_mmproj(args.checkpoint, args.out, args.llama_cpp, args.f16))
    return 0


if __name__ == "__main__":
    sys.exit(main())
