"""Damaged ONNX parts that pass the hash check (the manifest rewritten to match, as an attacker
who controls the bundle would) reach onnxruntime: truncated at many points, bytes overwritten in
the graph's structure and in the weights. Each runs in its own process: it must either run or end
with a named mmedge error (exit 2) — never a crash (a signal) and never a traceback."""
from __future__ import annotations

import pytest

from ..hostile_helpers import CASE_IDS, CASES, assert_ran_or_refused, run_damaged_part


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_damaged_onnx_runs_or_is_refused_never_crashes(fp32_bundle, tmp_path, case):
    proc = run_damaged_part(fp32_bundle, "projector", case, tmp_path)
    assert_ran_or_refused(proc, ("OnnxFormatError", "BackendError"))
    if case[0] == "truncate" and case[1] <= 0.5:
        assert proc.returncode == 2  # half a graph is never a runnable model
