"""Reading back what a GGUF file really holds (tensor types), never what was asked for."""
from __future__ import annotations

from collections import Counter
from pathlib import Path


def tensor_types(path: Path) -> dict[str, str]:
    import gguf

    reader = gguf.GGUFReader(str(path))
    return {t.name: t.tensor_type.name for t in reader.tensors}


def tensor_infos(path: Path) -> dict[str, tuple[str, int]]:
    """{tensor name: (type, number of dimensions)} as the file holds them."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    return {t.name: (t.tensor_type.name, len(t.shape)) for t in reader.tensors}


def count_types(types: dict[str, str]) -> dict[str, int]:
    """{tensor name: type} -> {type: how many tensors}, sorted by type name."""
    return dict(sorted(Counter(types.values()).items()))


def tensor_type_counts(path: Path) -> dict[str, int]:
    return count_types(tensor_types(path))
