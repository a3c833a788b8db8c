// Image files for the CLI: binary PPM always, PNG and JPEG when built with libpng / libjpeg.
// Decoded to packed RGB8; grey images are spread to three channels; PNG alpha is composited onto
// black by libpng's simplified API (the Python runtime follows transformers: see README).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

struct DecodedImage {
    int width = 0, height = 0;
    std::vector<uint8_t> rgb;
};

// Returns false and sets `error` (what was expected, what to do) when the file cannot be decoded.
bool read_image_file(const std::string &path, DecodedImage &out, std::string &error);
