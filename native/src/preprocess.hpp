// Image preprocessing that reproduces mmedge's numpy path (runtime/preprocess.py), which in turn
// reproduces transformers' PIL/numpy processors: PIL's uint8 resize (separable convolution with
// 22-bit fixed-point weights, in Pillow 13's pass order), center crop with zero padding, rescale in
// double then float, normalize in float, channels first.
#pragma once

#include <cstdint>
#include <vector>

#include "bundle.hpp"

namespace mmedge {

struct RgbImage {
    int width = 0, height = 0;
    std::vector<uint8_t> pixels;  // height x width x 3, packed
};

// True when `resample` names a filter this file implements (PIL's convolution filters).
bool resample_supported(const std::string &resample);

// PIL Image.resize((width, height), filter) of an RGB image, uint8 in and out.
RgbImage resize_rgb(const RgbImage &in, int width, int height, const std::string &resample);

// One image -> float32 CHW, as runtime/preprocess.py preprocess_image. `out_h`/`out_w` get the shape.
std::vector<float> preprocess_image(const RgbImage &image, const ImagePreprocess &spec, int &out_h, int &out_w);

}  // namespace mmedge
