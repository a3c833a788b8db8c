#include "image_file.hpp"

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#ifdef MMEDGE_WITH_PNG
#include <png.h>
#endif
#ifdef MMEDGE_WITH_JPEG
#include <jpeglib.h>
#endif

namespace {

constexpr int64_t kMaxPixels = 64000000;  // as the runtime: a header claiming more is refused before decoding

bool read_ppm(const std::string &bytes, DecodedImage &out, std::string &error) {
    std::istringstream in(bytes);
    std::string magic;
    int w = 0, h = 0, maxval = 0;
    in >> magic;
    auto skip_comments = [&] {
        in >> std::ws;
        while (in.peek() == '#') {
            std::string line;
            std::getline(in, line);
            in >> std::ws;
        }
    };
    skip_comments(); in >> w; skip_comments(); in >> h; skip_comments(); in >> maxval;
    if (magic != "P6" || !in || w < 1 || h < 1 || maxval != 255) {
        error = "not a binary 8-bit PPM (P6, maxval 255)";
        return false;
    }
    if (static_cast<int64_t>(w) * h > kMaxPixels) {
        error = "the header claims " + std::to_string(w) + "x" + std::to_string(h) + " pixels, over the limit";
        return false;
    }
    in.get();  // the one whitespace byte after maxval
    size_t n = static_cast<size_t>(w) * h * 3;
    out.rgb.resize(n);
    in.read(reinterpret_cast<char *>(out.rgb.data()), static_cast<std::streamsize>(n));
    if (static_cast<size_t>(in.gcount()) != n) {
        error = "the PPM is truncated";
        return false;
    }
    out.width = w;
    out.height = h;
    return true;
}

#ifdef MMEDGE_WITH_PNG
// One channel of Pillow's Image.alpha_composite (libImaging/AlphaComposite.c) with an opaque white
// background, to the bit: 7 fraction bits and its rounded division by 255.
uint8_t over_white(uint32_t value, uint32_t alpha) {
    if (alpha == 0) return 255;
    constexpr uint32_t kPrecisionBits = 7, kWhite = 255, kBackgroundAlpha = 255;
    uint32_t blend = kBackgroundAlpha * (255 - alpha);
    uint32_t outa255 = alpha * 255 + blend;
    uint32_t coef1 = alpha * 255 * 255 * (1u << kPrecisionBits) / outa255;
    uint32_t coef2 = 255 * (1u << kPrecisionBits) - coef1;
    uint32_t tmp = value * coef1 + kWhite * coef2 + (0x80u << kPrecisionBits);
    return static_cast<uint8_t>((((tmp >> 8) + tmp) >> 8) >> kPrecisionBits);
}

bool read_png(const std::string &bytes, DecodedImage &out, std::string &error) {
    png_image image;
    std::memset(&image, 0, sizeof(image));
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&image, bytes.data(), bytes.size())) {
        error = std::string("not a readable PNG (") + image.message + ")";
        return false;
    }
    if (static_cast<int64_t>(image.width) * image.height > kMaxPixels) {
        png_image_free(&image);
        error = "the header claims " + std::to_string(image.width) + "x" + std::to_string(image.height) + " pixels, over the limit";
        return false;
    }
    // RGBA, then onto white as the Python runtime does (transformers' convert_to_rgb:
    // Image.alpha_composite over a white RGBA background, then the alpha dropped). libpng's own
    // compositing (PNG_FORMAT_RGB) would put the image on black.
    image.format = PNG_FORMAT_RGBA;
    std::vector<uint8_t> rgba(PNG_IMAGE_SIZE(image));
    if (!png_image_finish_read(&image, nullptr, rgba.data(), 0, nullptr)) {
        error = std::string("a damaged PNG (") + image.message + ")";
        return false;
    }
    out.width = static_cast<int>(image.width);
    out.height = static_cast<int>(image.height);
    out.rgb.resize(rgba.size() / 4 * 3);
    for (size_t i = 0, n = rgba.size() / 4; i < n; ++i)
        for (int c = 0; c < 3; ++c) out.rgb[3 * i + c] = over_white(rgba[4 * i + c], rgba[4 * i + 3]);
    return true;
}
#endif

#ifdef MMEDGE_WITH_JPEG
struct JpegError {
    jpeg_error_mgr mgr;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

void jpeg_fail(j_common_ptr cinfo) {
    auto *err = reinterpret_cast<JpegError *>(cinfo->err);
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
}

bool read_jpeg(const std::string &bytes, DecodedImage &out, std::string &error) {
    jpeg_decompress_struct cinfo;
    JpegError err;
    cinfo.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = jpeg_fail;
    err.mgr.output_message = [](j_common_ptr) {};  // warnings: silent
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        error = std::string("a damaged JPEG (") + err.message + ")";
        return false;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, reinterpret_cast<const unsigned char *>(bytes.data()), static_cast<unsigned long>(bytes.size()));
    jpeg_read_header(&cinfo, TRUE);
    if (static_cast<int64_t>(cinfo.image_width) * cinfo.image_height > kMaxPixels) {
        jpeg_destroy_decompress(&cinfo);
        error = "the header claims too many pixels, over the limit";
        return false;
    }
    cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);
    out.width = static_cast<int>(cinfo.output_width);
    out.height = static_cast<int>(cinfo.output_height);
    out.rgb.resize(static_cast<size_t>(out.width) * out.height * 3);
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = &out.rgb[static_cast<size_t>(cinfo.output_scanline) * out.width * 3];
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return true;
}
#endif

}  // namespace

bool read_image_file(const std::string &path, DecodedImage &out, std::string &error) {
    std::ifstream f(path, std::ios::binary);
    if (!f) {
        error = path + ": cannot be opened";
        return false;
    }
    std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    bool ok = false;
    std::string why;
    if (bytes.compare(0, 2, "P6") == 0) {
        ok = read_ppm(bytes, out, why);
    } else if (bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0) {
#ifdef MMEDGE_WITH_PNG
        ok = read_png(bytes, out, why);
#else
        why = "a PNG, and this build has no libpng (install libpng-dev and rebuild), or convert it to PPM";
#endif
    } else if (bytes.compare(0, 3, "\xff\xd8\xff") == 0) {
#ifdef MMEDGE_WITH_JPEG
        ok = read_jpeg(bytes, out, why);
#else
        why = "a JPEG, and this build has no libjpeg (install libjpeg-dev and rebuild), or convert it to PPM";
#endif
    } else {
        why = "not a PNG, JPEG or binary PPM file";
    }
    if (!ok) error = path + ": " + why;
    return ok;
}
