// The GGUF header check of runtime/gguf_check.py, in C++: llama.cpp's GGUF loader has had integer
// overflows and out-of-bounds reads on malformed files, and a bundle can come from a stranger, so
// the header is checked here before llama.cpp reads a byte of it. Same rules, same messages (the
// tests compare them with Python's, case by case): magic and version; counts the file can hold;
// keys unique, UTF-8, at most 65,535 bytes; known value types, booleans 0 or 1, strings and
// arrays inside the file, no arrays of arrays; general.alignment a uint32 power of two; tensors
// with unique UTF-8 names, at most 4 dimensions of at most 2^62, a known ggml type whose block
// divides the first dimension, packed in order at aligned offsets, data inside the file; the
// vocabulary arrays of equal length and special token ids inside them. Only the header is read
// (a memory map); sizes are computed in 128 bits, so nothing overflows.
#pragma once

#include <cstdint>
#include <string>

namespace mmedge {

// Throws Error(MMEDGE_ERR_FORMAT) naming the field, or Error(MMEDGE_ERR_IO) if the file cannot be read.
void check_gguf_file(const std::string &path);

// The same on bytes in memory (the whole file: sizes are checked against its length).
void check_gguf_bytes(const unsigned char *data, uint64_t size, const std::string &where);

}  // namespace mmedge
