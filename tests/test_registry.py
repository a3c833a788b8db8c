"""Every registered family has its parity test; unknown architectures are refused up front."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmedge.errors import UnsupportedArchitectureError
from mmedge.export.families import family_for_architecture, registered_families


@pytest.mark.parametrize("name", sorted(registered_families()))
def test_family_has_parity_test(name):
    path = Path(__file__).parent / "export" / f"test_family_{name}_parity.py"
    assert path.is_file(), f"family {name!r} is registered but {path} does not exist"
    assert "transformers" in path.read_text() or "generate" in path.read_text()


def test_unknown_architecture_lists_registered():
    with pytest.raises(UnsupportedArchitectureError, match="LlavaForConditionalGeneration"):
        family_for_architecture("MllamaForConditionalGeneration")
