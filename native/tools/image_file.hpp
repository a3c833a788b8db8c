// Image files for the CLI: binary PPM always, PNG and JPEG when built with libpng / libjpeg.
// Decoded to packed RGB8 as the Python runtime decodes them (Pillow, then transformers'
// convert_to_rgb): grey spread to three channels, PNG palettes and tRNS expanded, alpha
// composited onto white with Pillow's arithmetic, 16-bit samples cut to their high byte (16-bit
// grey clipped at 255, as Pillow converts "I;16"), gAMA chunks ignored. The tests compare tokens.
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
