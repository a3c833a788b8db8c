from __future__ import annotations

import pytest

from .manifest_helpers import valid_manifest_dict


@pytest.fixture
def valid() -> dict:
    """A complete manifest as `Manifest.to_dict` lays it out (a LLaVA-1.5-like CLIP + Llama bundle)."""
    return valid_manifest_dict()
