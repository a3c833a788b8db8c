"""The Python runtime's .pte parts run on the threads asked for: ExecuTorch's pool is sized before
the first method loads (XNNPACK keeps it from then on). A pipeline opened while another holds the
pool runs on the pool as it is and says so in a placement note, instead of resizing it under the
first (a resize freed the pool the first pipeline's methods still used). All give the same greedy
tokens. Runs in a subprocess: the pool is per process."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runs(bundles_with_targets):
    bundle = bundles_with_targets("clip-llama-bpe", ("executorch", "fp32"), ("executorch", "fp32"), "F32")[0]
    proc = subprocess.run([sys.executable, "-m", "tests.runtime.executorch_pool_runner", str(bundle)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_pool_is_sized_to_the_threads_asked_for(runs):
    a = runs["a"]
    assert a["pool"] == 1 and a["parts"]["vision_encoder"] == 1 and a["parts"]["projector"] == 1
    assert a["parts"]["llm"] == 1 and a["notes"] == []


def test_a_second_pipeline_does_not_resize_a_held_pool_and_says_so(runs):
    b = runs["b"]
    assert b["pool"] == 1 and b["parts"]["vision_encoder"] == 1 and b["parts"]["llm"] == 2
    assert len(b["notes"]) == 2 and all("2 threads asked for" in n and "holds it at 1" in n for n in b["notes"])


def test_the_pool_is_resized_once_no_part_holds_it(runs):
    c = runs["c"]
    assert c["pool"] == 2 and c["parts"]["vision_encoder"] == 2 and c["notes"] == []


def test_every_thread_count_gives_the_same_tokens(runs):
    first = runs["a"]["tokens"]
    assert len(first) == 8
    assert runs["a"]["tokens_again"] == first and runs["b"]["tokens"] == first and runs["c"]["tokens"] == first
