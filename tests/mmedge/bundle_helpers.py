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


def replace_part_rehashed(bundle: Path, role: str, data: bytes) -> Path:
    """Replace a part's bytes and rewrite its manifest sha256 and size to match: what an attacker who
    controls the whole bundle hands a user (the hash check passes; the parsers must hold)."""
    from mmedge.bundle import sha256_file

    manifest = read_manifest_dict(bundle)
    part = manifest["parts"][role]
    path = bundle / part["file"]
    path.write_bytes(data)
    part["sha256"], part["size_bytes"] = sha256_file(path), path.stat().st_size
    write_manifest_dict(bundle, manifest)
    return path
