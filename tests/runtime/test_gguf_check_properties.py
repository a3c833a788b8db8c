"""Property tests of the GGUF header check (hypothesis): whatever bytes it is given, it either
refuses them with GgufFormatError or returns a header whose every tensor lies inside the data,
aligned, packed and uniquely named — never another exception."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmedge.errors import GgufFormatError
from mmedge.runtime.gguf_check import parse_gguf_header

from ..gguf_builder import GgufSpec

BASELINE = GgufSpec().build()
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


def _check(data: bytes) -> None:
    try:
        h = parse_gguf_header(data)
    except GgufFormatError:
        return
    assert h.data_start % h.alignment == 0 and h.data_start <= len(data)
    expected = 0
    for t in h.tensors.values():
        assert t.offset == expected and t.offset % h.alignment == 0
        assert h.data_start + t.offset + t.nbytes <= len(data)
        expected = (t.offset + t.nbytes + h.alignment - 1) // h.alignment * h.alignment
    assert len(h.tensors) == len(set(h.tensors))


@SETTINGS
@given(st.binary(max_size=512))
def test_arbitrary_bytes(data):
    _check(data)


@SETTINGS
@given(st.binary(max_size=400))
def test_arbitrary_bytes_after_a_valid_preamble(tail):
    """Past the magic and version, so the counts and fields are hostile, not just the magic."""
    _check(BASELINE[:8] + tail)


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, len(BASELINE) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_byte_overwrites_of_a_valid_file(changes):
    data = bytearray(BASELINE)
    for pos, value in changes:
        data[pos] = value
    _check(bytes(data))


@SETTINGS
@given(st.integers(0, len(BASELINE) - 1), st.sampled_from([1 << 31, 1 << 32, 1 << 62, (1 << 64) - 1, 0xFFFFFFFF, 0]),
       st.sampled_from([4, 8]))
def test_wide_integers_written_anywhere(pos, value, width):
    """An integer field of the header set to a hostile value, at every position (aligned or not)."""
    data = bytearray(BASELINE)
    raw = (value % (1 << (8 * width))).to_bytes(width, "little")
    data[pos:pos + width] = raw[: len(data) - pos]
    _check(bytes(data))
