// Token bytes -> text as the Python runtime makes it (pipeline._split_utf8): the longest prefix
// that is valid UTF-8, cutting at most 3 bytes of an unfinished character for the next token;
// when no such cut exists, everything is decoded with U+FFFD replacing each maximal ill-formed
// subsequence (the Unicode practice CPython's "replace" handler follows). A NUL byte (U+0000),
// which the C ABI's NUL-terminated text cannot carry, becomes U+FFFD in both runtimes.
#pragma once

#include <string>

namespace mmedge {

// Returns the text to emit now and leaves the bytes to keep in `pending`.
std::string take_utf8(std::string &pending);

// Whether `bytes` is well-formed UTF-8 (what Python's strict decode accepts).
bool is_utf8(const std::string &bytes);

// Python's str.strip() on UTF-8 text (what Jinja's `trim` does): the characters str.isspace()
// takes, Unicode's included, cut from both ends. Text that is not valid UTF-8 is returned as is.
std::string strip_whitespace(const std::string &text);

// Every byte decoded, ill-formed sequences replaced (used for what is left at the end).
std::string decode_utf8_replacing(const std::string &bytes);

}  // namespace mmedge
