"""Token bytes -> streamed text (pipeline._split_utf8): a character split across tokens comes
whole with the token that completes it, bytes that never form one come as U+FFFD, and so does a
NUL byte, which the native runtime's NUL-terminated text cannot carry (both runtimes agree; the
native side is compared on real generations in tests/native/)."""
from __future__ import annotations

import pytest

from mmedge.runtime.pipeline import _decode_replacing, _split_utf8


@pytest.mark.parametrize("data, text, kept", [
    (b"abc", "abc", b""),
    (b"a\xc3", "a", b"\xc3"),  # half of a 2-byte character waits for the next token
    (b"\xe4\xba", "", b"\xe4\xba"),
    (b"\xe4\xba\xac", "\u4eac", b""),
    (b"\x00", "\ufffd", b""),
    (b"a\x00b\x00", "a\ufffdb\ufffd", b""),
    (b"\x00\xf0\x9f", "\ufffd", b"\xf0\x9f"),
    (b"\xff\xfe", "", b"\xff\xfe"),  # up to 4 bytes may still be the start of a character
    (b"\xff" * 5, "\ufffd" * 5, b""),  # more cannot: replaced
])
def test_split(data, text, kept):
    assert _split_utf8(data) == (text, kept)


def test_the_tail_at_the_end_is_replaced():
    assert _decode_replacing(b"\xe4\xba") == "\ufffd" and _decode_replacing(b"x\x00") == "x\ufffd"
