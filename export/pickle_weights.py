"""`--allow-pickle`: a checkpoint whose weights are pickle files (.bin / .pt), converted to safetensors
through torch's restricted unpickler before anything else reads it.

A pickle can run any code while it loads. `torch.load(weights_only=True)` unpickles tensors,
dicts and primitive types only and refuses every other global, so a crafted file fails instead of
executing. The weights are written to a private copy of the checkpoint folder as one
`model.safetensors` (the config, tokenizer and processor files are copied beside it; code files are
not), and the export loads that copy the safetensors way, so transformers never unpickles anything.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from mmedge.errors import CheckpointError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
# Files of a checkpoint folder that are never copied: weights (converted instead) and code
# (mmedge never runs a checkpoint's own code).
_SKIPPED_SUFFIXES = PICKLE_SUFFIXES + (".safetensors", ".py", ".pyc", ".so", ".dylib")
_INDEX_NAMES = ("pytorch_model.bin.index.json",)


def pickle_files(folder: Path) -> list[Path]:
    """The weight shards, in the index's order when there is one."""
    for name in _INDEX_NAMES:
        index = folder / name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                raise CheckpointError(f"{index}: unreadable shard index ({e}); fix or remove it") from None
            paths = [folder / s for s in shards]
            for p in paths:
                if p.parent != folder or not p.is_file():
                    raise CheckpointError(f"{index}: names a shard {p.name!r} that is not a file in {folder}")
            return paths
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in PICKLE_SUFFIXES)


def _load_restricted(path: Path) -> dict:
    import pickle

    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path.name}: refused by torch's weights-only loader ({first}); the file holds more than tensors "
            "(it could run code) or is damaged. Convert it where you trust it with save_pretrained(safe_serialization=True)"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path.name}: not a state dict of named tensors; mmedge converts Hugging Face weight files only")
    return state


def convert_pickle_checkpoint(src: Path, dst: Path) -> dict:
    """Write a safetensors copy of the checkpoint folder `src` into the empty folder `dst`; returns
    what was converted (for the manifest's `source`)."""
    from safetensors.torch import save_file

    shards = pickle_files(src)
    if not shards:
        raise CheckpointError(f"{src}: no pickle weight files ({', '.join(PICKLE_SUFFIXES)}) to convert")
    state: dict = {}
    for shard in shards:
        for name, tensor in _load_restricted(shard).items():
            if name in state:
                raise CheckpointError(f"{shard.name}: tensor {name!r} is also in another shard; the checkpoint is inconsistent")
            state[name] = tensor
    # safetensors stores each tensor once: tied weights (the same storage under two names) are
    # written as copies, which transformers ties again on load.
    seen: set = set()
    for name, tensor in state.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        state[name] = tensor.clone().contiguous() if key in seen or not tensor.is_contiguous() else tensor
        seen.add(key)
    for item in src.iterdir():
        if item.is_file() and not item.is_symlink() and item.suffix not in _SKIPPED_SUFFIXES and item.name not in _INDEX_NAMES:
            shutil.copyfile(item, dst / item.name)
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return {"weights": "pickle, converted to safetensors with torch.load(weights_only=True)",
            "pickle_files": [s.name for s in shards], "tensors": len(state)}


@contextmanager
def loadable_checkpoint(folder: str | Path, allow_pickle: bool) -> Iterator[Path]:
    """The folder to load the checkpoint `folder` from: itself when it holds safetensors; with
    `allow_pickle`, a private converted copy that lives as long as the block. Anything else is
    refused by `check_weights` (a CheckpointError naming --allow-pickle)."""
    from .checkpoint import check_weights

    folder = Path(folder)
    if check_weights(folder, allow_pickle) != "pickle":
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="mmedge-safetensors-") as converted:
        convert_pickle_checkpoint(folder, Path(converted))
        yield Path(converted)
