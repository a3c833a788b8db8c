#include "image_file.hpp"

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <vector>

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

// libpng's full API with the transforms that give Pillow's pixels (its simplified API would apply
// gAMA chunks and read 16-bit samples as linear light; Pillow does neither): palettes and tRNS
// expanded, 1/2/4-bit grey scaled to 8, 16-bit samples cut to their high byte, no gamma. 16-bit
// grey alone follows Pillow's own rule: its "I;16" image converts to RGB by clipping at 255.
struct PngRead {
    const std::string *bytes = nullptr;
    size_t offset = 0;
    png_structp png = nullptr;
    png_infop info = nullptr;
    uint32_t width = 0, height = 0;
    bool grey16 = false;
    bool over_limit = false;  // `message` says so as it is, not as damage
    std::vector<uint8_t> pixels;  // RGBA8, or big-endian grey16 when grey16
    std::vector<png_bytep> rows;
    char message[200] = "";
};

void png_read_bytes(png_structp png, png_bytep data, png_size_t length) {
    auto *r = static_cast<PngRead *>(png_get_io_ptr(png));
    if (length > r->bytes->size() - r->offset) png_error(png, "the file ends early");
    std::memcpy(data, r->bytes->data() + r->offset, length);
    r->offset += length;
}

void png_fail(png_structp png, png_const_charp message) {
    auto *r = static_cast<PngRead *>(png_get_error_ptr(png));
    std::snprintf(r->message, sizeof r->message, "%s", message);
    png_longjmp(png, 1);
}

// Decodes into `r`; every value that must survive a longjmp lives in `r`, outside this frame.
bool decode_png(PngRead &r) {
    if (setjmp(png_jmpbuf(r.png))) return false;
    png_set_read_fn(r.png, &r, png_read_bytes);
    png_read_info(r.png, r.info);
    r.width = png_get_image_width(r.png, r.info);
    r.height = png_get_image_height(r.png, r.info);
    if (static_cast<int64_t>(r.width) * r.height > kMaxPixels) {
        std::snprintf(r.message, sizeof r.message, "the header claims %ux%u pixels, over the limit", r.width, r.height);
        r.over_limit = true;
        return false;
    }
    const int depth = png_get_bit_depth(r.png, r.info), colour = png_get_color_type(r.png, r.info);
    const bool has_trns = png_get_valid(r.png, r.info, PNG_INFO_tRNS) != 0;
    r.grey16 = depth == 16 && colour == PNG_COLOR_TYPE_GRAY;
    if (!r.grey16) {
        if (colour == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(r.png);
        if (colour == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(r.png);
        if (has_trns) png_set_tRNS_to_alpha(r.png);
        if (depth == 16) png_set_strip_16(r.png);
        if (!(colour & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(r.png);
        if (!(colour & PNG_COLOR_MASK_ALPHA) && !has_trns) png_set_filler(r.png, 0xFF, PNG_FILLER_AFTER);
    }
    png_set_interlace_handling(r.png);
    png_read_update_info(r.png, r.info);
    const size_t row_bytes = png_get_rowbytes(r.png, r.info);
    if (row_bytes != static_cast<size_t>(r.width) * (r.grey16 ? 2 : 4)) png_error(r.png, "an unexpected row layout");
    r.pixels.resize(row_bytes * r.height);
    r.rows.resize(r.height);
    for (uint32_t y = 0; y < r.height; ++y) r.rows[y] = r.pixels.data() + y * row_bytes;
    png_read_image(r.png, r.rows.data());
    return true;
}

bool read_png(const std::string &bytes, DecodedImage &out, std::string &error) {
    PngRead r;
    r.bytes = &bytes;
    r.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r, png_fail, [](png_structp, png_const_charp) {});
    r.info = r.png ? png_create_info_struct(r.png) : nullptr;
    if (!r.png || !r.info) {
        png_destroy_read_struct(&r.png, &r.info, nullptr);
        error = "out of memory reading a PNG";
        return false;
    }
    bool ok = decode_png(r);
    png_destroy_read_struct(&r.png, &r.info, nullptr);
    if (!ok) {
        error = r.over_limit ? std::string(r.message) : std::string("a damaged PNG (") + r.message + ")";
        return false;
    }
    out.width = static_cast<int>(r.width);
    out.height = static_cast<int>(r.height);
    const size_t n = static_cast<size_t>(r.width) * r.height;
    out.rgb.resize(n * 3);
    for (size_t i = 0; i < n; ++i) {
        if (r.grey16) {
            unsigned v = (static_cast<unsigned>(r.pixels[2 * i]) << 8) | r.pixels[2 * i + 1];
            out.rgb[3 * i] = out.rgb[3 * i + 1] = out.rgb[3 * i + 2] = static_cast<uint8_t>(v > 255 ? 255 : v);
        } else {
            // Onto white as the Python runtime does (transformers' convert_to_rgb: alpha_composite
            // over a white RGBA background, then the alpha dropped).
            for (int c = 0; c < 3; ++c) out.rgb[3 * i + c] = over_white(r.pixels[4 * i + c], r.pixels[4 * i + 3]);
        }
    }
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
