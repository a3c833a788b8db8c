"""Reading a user's checkpoint folder: its architecture before any heavy work, then the weights.

Only safetensors weights are loaded: pickle checkpoints (.bin/.pt) can execute code.
"""
from __future__ import annotations

import json
from pathlib import Path

from mmedge.errors import CheckpointError

from .pickle_weights import PICKLE_SUFFIXES as _PICKLE_SUFFIXES


def read_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a folder; give a Hugging Face checkpoint folder (config.json + *.safetensors)")
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{path}: no config.json; is this a Hugging Face checkpoint folder saved with save_pretrained?")
    return read_json_object(cfg_path)


def read_json_object(file: Path) -> dict:
    """A checkpoint's JSON file that must hold an object; anything else is a CheckpointError."""
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{file}: unreadable or not JSON ({e}); fix or remove it") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{file}: expected a JSON object")
    return data


def architecture_of(path: str | Path) -> str:
    cfg = read_config(path)
    archs = cfg.get("architectures")
    if not isinstance(archs, list) or not archs or not isinstance(archs[0], str):
        raise CheckpointError(
            f"{path}/config.json: no 'architectures' entry; mmedge needs it to pick the model family "
            "(save the model with save_pretrained, which writes it)"
        )
    return archs[0]


def check_weights(path: str | Path, allow_pickle: bool = False) -> str:
    """Which weights the checkpoint folder holds: "safetensors", or "pickle" (only with
    `allow_pickle`: export/pickle_weights.py converts them through torch's weights-only loader)."""
    path = Path(path)
    if any(path.glob("*.safetensors")):
        return "safetensors"
    pickles = [p.name for p in path.iterdir() if p.suffix in _PICKLE_SUFFIXES]
    if pickles and allow_pickle:
        return "pickle"
    if pickles:
        raise CheckpointError(
            f"{path}: only pickle weights ({', '.join(sorted(pickles))}); mmedge loads safetensors only because pickle "
            "files can run code. Convert with `model.save_pretrained(dir, safe_serialization=True)`, or pass "
            "--allow-pickle to convert them here through torch's weights-only loader"
        )
    raise CheckpointError(f"{path}: no *.safetensors weights found")


def quiet_transformers() -> None:
    """mmedge prints its own progress; transformers' per-load bars and its torchvision-fallback
    notice (the PIL processors it falls back to are the ones mmedge reproduces) are noise here."""
    import logging

    # transformers imports torchao when it is installed (for ExecuTorch): torchao logs every optional
    # CUDA kernel library it cannot load, and torch logs a deprecation per enum torchao registers.
    # Set before transformers' model modules are imported.
    logging.getLogger("torchao").setLevel(logging.ERROR)
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_pretrained(model_cls, path: str | Path):
    """Load a model in fp32 eval mode from safetensors; errors become `CheckpointError`."""
    import torch

    quiet_transformers()
    check_weights(path)
    try:
        model = model_cls.from_pretrained(str(path), dtype=torch.float32, use_safetensors=True, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"{path}: transformers could not load the checkpoint: {e}") from None
    model.eval()
    return model, model.config
