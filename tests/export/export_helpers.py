"""Helpers shared by the export test files."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mmedge.bundle import STAGING_PREFIX


def tree_hashes(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file (symlinks not followed), plus folders as 'dir'."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            out[rel] = "symlink:" + os.readlink(path)
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def staging_leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(STAGING_PREFIX))
