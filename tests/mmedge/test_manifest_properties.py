"""Property tests of the manifest reader (hypothesis): any JSON value, and a valid manifest with any
field replaced, deleted or nested deeper, is either read or refused with ManifestError — never
another exception (a KeyError, a TypeError, a RecursionError from deep inside)."""
from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmedge.errors import ManifestError
from mmedge.manifest import Manifest

from .manifest_helpers import valid_manifest_dict

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
BASE = valid_manifest_dict()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def _paths(d, prefix=()):
    """Every (path) to a value inside the manifest dict, dicts and lists alike."""
    yield prefix
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _paths(v, prefix + (i,))


PATHS = [p for p in _paths(BASE) if p]


def _read(data) -> None:
    try:
        Manifest.from_json(json.dumps(data))
    except ManifestError:
        pass


@SETTINGS
@given(json_values)
def test_any_json_value(value):
    _read(value)


@SETTINGS
@given(st.sampled_from(PATHS), json_values)
def test_any_field_replaced(path, value):
    data = copy.deepcopy(BASE)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    _read(data)


@SETTINGS
@given(st.sampled_from(PATHS))
def test_any_field_deleted(path):
    data = copy.deepcopy(BASE)
    target = data
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    _read(data)


@SETTINGS
@given(st.binary(max_size=300))
def test_any_bytes(raw):
    try:
        Manifest.from_json(raw)
    except ManifestError:
        pass


def test_the_mutated_manifest_is_valid_to_begin_with():
    assert Manifest.from_json(json.dumps(BASE)).parts["llm"].kind == "gguf" and len(PATHS) > 40
