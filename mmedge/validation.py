"""Strict field access for the JSON the bundle carries: a wrong or missing field is a
`ManifestError` naming it, never a KeyError from deep inside the runtime."""
from __future__ import annotations

from typing import Any

from .errors import ManifestError


def get_field(d: dict, key: str, types: type | tuple, where: str, optional: bool = False, default: Any = None) -> Any:
    if not isinstance(d, dict):
        raise ManifestError(f"{where}: expected a JSON object, found {type(d).__name__}")
    if key not in d:
        if optional:
            return default
        raise ManifestError(f"{where}.{key}: required field is missing; re-export the bundle with `mmedge export`")
    value = d[key]
    # bool is an int in Python; a JSON true must not pass as a number.
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ManifestError(f"{where}.{key}: expected {type_names(types)}, found a boolean")
    if not isinstance(value, types):
        raise ManifestError(f"{where}.{key}: expected {type_names(types)}, found {type(value).__name__}")
    return value


def type_names(types: type | tuple) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(t.__name__ for t in types)
