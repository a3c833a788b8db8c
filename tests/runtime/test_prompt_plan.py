"""Token plans: markers expand one image each, and runs of the image token take the images' rows in
order (a count that does not match is refused)."""
from __future__ import annotations

import pytest

from mmedge.errors import PromptError
from mmedge.runtime.prompt import ImageRows, expand_markers, plan_tokens


def test_plan_refuses_image_tokens_that_do_not_match_rows():
    image = 99  # the image token id
    with pytest.raises(PromptError, match="holds 3 image-token positions but the images give 2 embedding rows"):
        plan_tokens([0, 10, image, image, 11, image, 12], image, 2)
    plan = plan_tokens([0, 10, image, image, 11, image, 12], image, 3)
    # Runs of image tokens take consecutive rows, in order, across text between them.
    assert plan.items == ([0, 10], ImageRows(0, 2), [11], ImageRows(2, 1), [12])
    assert plan.n_positions == 7


def test_markers_expand_one_image_each():
    assert expand_markers("a<m>b<m>c", "<m>", ["X", "YY"]) == "aXbYYc"
    with pytest.raises(PromptError, match=r"holds 2 image marker\(s\) '<m>' but 1 image\(s\)"):
        expand_markers("a<m>b<m>c", "<m>", ["X"])
