#include "preprocess.hpp"

#include <cmath>
#include <map>
#include <string>

#include "error.hpp"

namespace mmedge {

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // PIL's fixed point for 8-bit images

struct Filter {
    double support;
    double (*weight)(double);
};

double box_weight(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }

double bilinear_weight(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

double hamming_weight(double x) {
    if (x < 0.0) x = -x;
    if (x == 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x *= M_PI;
    return std::sin(x) / x * (0.54f + 0.46f * std::cos(x));  // float constants, as Pillow's
}

double bicubic_weight(double x) {
    const double a = -0.5;  // PIL's (and Keys') cubic
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

double sinc(double x) {
    if (x == 0.0) return 1.0;
    x *= M_PI;
    return std::sin(x) / x;
}

double lanczos_weight(double x) { return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0; }

const std::map<std::string, Filter> &filters() {
    static const std::map<std::string, Filter> table = {
        {"box", {0.5, box_weight}},           {"bilinear", {1.0, bilinear_weight}},
        {"hamming", {1.0, hamming_weight}},   {"bicubic", {2.0, bicubic_weight}},
        {"lanczos", {3.0, lanczos_weight}},
    };
    return table;
}

// Per output pixel: the first input pixel, how many, and their fixed-point weights (ksize each).
struct Coefficients {
    int ksize = 0;
    std::vector<int> first, count;
    std::vector<int32_t> weights;
};

Coefficients coefficients(int in_size, int out_size, const Filter &filter) {
    double scale = static_cast<double>(in_size) / out_size;
    double filter_scale = scale < 1.0 ? 1.0 : scale;
    double support = filter.support * filter_scale;
    Coefficients c;
    c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
    c.first.resize(out_size);
    c.count.resize(out_size);
    c.weights.assign(static_cast<size_t>(out_size) * c.ksize, 0);
    std::vector<double> k(c.ksize);
    for (int xx = 0; xx < out_size; ++xx) {
        double center = (xx + 0.5) * scale;
        double inv = 1.0 / filter_scale;
        int xmin = static_cast<int>(center - support + 0.5);  // truncation, as C's cast
        if (xmin < 0) xmin = 0;
        int xmax = static_cast<int>(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double total = 0.0;
        for (int x = 0; x < xmax; ++x) {
            k[x] = filter.weight((x + xmin - center + 0.5) * inv);
            total += k[x];
        }
        for (int x = 0; x < xmax; ++x) {
            double w = total != 0.0 ? k[x] / total : k[x];
            double fixed = w * (1 << kPrecisionBits);
            c.weights[static_cast<size_t>(xx) * c.ksize + x] = static_cast<int32_t>(w < 0 ? -0.5 + fixed : 0.5 + fixed);
        }
        c.first[xx] = xmin;
        c.count[xx] = xmax;
    }
    return c;
}

inline uint8_t clip8(int64_t v) {
    if (v >= (int64_t(1) << kPrecisionBits << 8)) return 255;
    if (v <= 0) return 0;
    return static_cast<uint8_t>(v >> kPrecisionBits);
}

RgbImage horizontal(const RgbImage &in, int out_w, const Filter &f) {
    Coefficients c = coefficients(in.width, out_w, f);
    RgbImage out{out_w, in.height, std::vector<uint8_t>(static_cast<size_t>(out_w) * in.height * 3)};
    for (int y = 0; y < in.height; ++y) {
        const uint8_t *row = &in.pixels[static_cast<size_t>(y) * in.width * 3];
        uint8_t *dst = &out.pixels[static_cast<size_t>(y) * out_w * 3];
        for (int xx = 0; xx < out_w; ++xx) {
            const int32_t *k = &c.weights[static_cast<size_t>(xx) * c.ksize];
            int32_t r = 1 << (kPrecisionBits - 1), g = r, b = r;  // PIL sums in int: the weights keep it in range
            const uint8_t *px = row + static_cast<size_t>(c.first[xx]) * 3;
            for (int x = 0; x < c.count[xx]; ++x, px += 3) {
                r += px[0] * k[x];
                g += px[1] * k[x];
                b += px[2] * k[x];
            }
            dst[xx * 3] = clip8(r);
            dst[xx * 3 + 1] = clip8(g);
            dst[xx * 3 + 2] = clip8(b);
        }
    }
    return out;
}

RgbImage vertical(const RgbImage &in, int out_h, const Filter &f) {
    Coefficients c = coefficients(in.height, out_h, f);
    RgbImage out{in.width, out_h, std::vector<uint8_t>(static_cast<size_t>(in.width) * out_h * 3)};
    const size_t row_bytes = static_cast<size_t>(in.width) * 3;
    std::vector<int32_t> sum(row_bytes);
    for (int yy = 0; yy < out_h; ++yy) {
        const int32_t *k = &c.weights[static_cast<size_t>(yy) * c.ksize];
        std::fill(sum.begin(), sum.end(), 1 << (kPrecisionBits - 1));
        for (int y = 0; y < c.count[yy]; ++y) {  // row by row: contiguous reads, the same sums
            const uint8_t *src = &in.pixels[(c.first[yy] + y) * row_bytes];
            for (size_t i = 0; i < row_bytes; ++i) sum[i] += src[i] * k[y];
        }
        uint8_t *dst = &out.pixels[yy * row_bytes];
        for (size_t i = 0; i < row_bytes; ++i) dst[i] = clip8(sum[i]);
    }
    return out;
}

}  // namespace

bool resample_supported(const std::string &resample) { return filters().count(resample) > 0; }

RgbImage resize_rgb(const RgbImage &in, int width, int height, const std::string &resample) {
    auto it = filters().find(resample);
    if (it == filters().end())
        fail(MMEDGE_ERR_UNSUPPORTED, "preprocess.image.resample: '" + resample + "' is not a filter the native runtime implements");
    RgbImage out = in;
    // Pillow 13's pass order (the pinned version, and the rounding differs with it): vertical
    // first when the height shrinks by more than twice as many pixels as the width does.
    int shrink_h = in.height - height, shrink_w = in.width - width;
    bool vertical_first = shrink_h > 0 && shrink_h > shrink_w * 2;
    if (vertical_first && height != in.height) out = vertical(out, height, it->second);
    if (width != in.width) out = horizontal(out, width, it->second);
    if (!vertical_first && height != in.height) out = vertical(out, height, it->second);
    return out;
}

std::vector<float> preprocess_image(const RgbImage &image, const ImagePreprocess &spec, int &out_h, int &out_w) {
    int h, w;
    if (spec.resize_mode == "exact") {
        h = spec.height;
        w = spec.width;
    } else {  // shortest_edge: keep the aspect ratio, the long side truncated as int(short_target * long / short)
        int target = spec.shortest_edge;
        bool portrait = image.width <= image.height;
        int shorter = portrait ? image.width : image.height, longer = portrait ? image.height : image.width;
        int new_long = static_cast<int>(static_cast<double>(target) * longer / shorter);
        h = portrait ? new_long : target;
        w = portrait ? target : new_long;
    }
    if (h < 1 || w < 1) fail(MMEDGE_ERR_IMAGE, "the image resizes to " + std::to_string(w) + "x" + std::to_string(h) + "; it is too thin");
    RgbImage pixels = resize_rgb(image, w, h, spec.resample);
    int crop_h = spec.crop ? spec.crop_height : h, crop_w = spec.crop ? spec.crop_width : w;
    int top = 0, left = 0;            // crop offsets into the (padded) image
    int pad_top = 0, pad_left = 0;    // where the image sits in the padded canvas
    int canvas_h = h, canvas_w = w;
    if (spec.crop && (h < crop_h || w < crop_w)) {
        canvas_h = std::max(h, crop_h);
        canvas_w = std::max(w, crop_w);
        pad_top = (canvas_h - h + 1) / 2;  // the odd padding row goes before the image, as transformers
        pad_left = (canvas_w - w + 1) / 2;
    }
    top = (canvas_h - crop_h) / 2;
    left = (canvas_w - crop_w) / 2;
    std::vector<float> out(static_cast<size_t>(3) * crop_h * crop_w);
    for (int y = 0; y < crop_h; ++y) {
        for (int x = 0; x < crop_w; ++x) {
            int sy = y + top - pad_top, sx = x + left - pad_left;
            for (int ch = 0; ch < 3; ++ch) {
                uint8_t px = (sy >= 0 && sy < h && sx >= 0 && sx < w) ? pixels.pixels[(static_cast<size_t>(sy) * w + sx) * 3 + ch] : 0;
                float v = spec.rescale ? static_cast<float>(static_cast<double>(px) * spec.rescale_factor) : static_cast<float>(px);
                if (spec.normalize) v = (v - spec.mean[ch]) / spec.std[ch];
                out[(static_cast<size_t>(ch) * crop_h + y) * crop_w + x] = v;
            }
        }
    }
    out_h = crop_h;
    out_w = crop_w;
    return out;
}

}  // namespace mmedge
