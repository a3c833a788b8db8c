"""Helpers to read and damage bundles, shared by the bundle test files."""
from __future__ import annotations

import json
from pathlib import Path


def read_manifest_dict(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def write_manifest_dict(bundle: Path, data) -> None:
    (bundle / "manifest.json").write_text(json.dumps(data, indent=2))


def part_file(bundle: Path, role: str) -> Path:
    return bundle / read_manifest_dict(bundle)["parts"][role]["file"]


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def point_part_at(bundle: Path, role: str, new_file: str) -> None:
    data = read_manifest_dict(bundle)
    data["parts"][role]["file"] = new_file
    write_manifest_dict(bundle, data)
