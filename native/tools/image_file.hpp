// Image files for the CLI: binary PPM always, PNG and JPEG when built with libpng / libjpeg.
// Decoded to packed RGB8 as the Python runtime decodes them: grey spread to three channels, PNG
// palettes expanded, PNG alpha composited onto white with Pillow's arithmetic (transformers'
// convert_to_rgb). Not matched: 16-bit PNGs and PNGs with a gAMA chunk (libpng's simplified API
// converts those to sRGB 8-bit; Pillow keeps the stored values).
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
