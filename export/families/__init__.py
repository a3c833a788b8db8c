"""Model families. Every module in this package registers itself on import."""
from __future__ import annotations

import importlib
import pkgutil

from .base import Family, FamilyInfo, LoadedCheckpoint, family_for_architecture, register_family, registered_families

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Family", "FamilyInfo", "LoadedCheckpoint", "family_for_architecture", "register_family", "registered_families"]
