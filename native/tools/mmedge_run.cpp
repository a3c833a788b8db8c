// mmedge-run BUNDLE --image x.png [--image y.jpg] --prompt "..." : the C ABI from the command line.
// Streams the answer to stdout; --json prints one JSON object (tokens, text, stats) instead.
// Exit codes: 0 done, 2 a refused bundle / input (the message says what to do), 1 usage.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "image_file.hpp"
#include "mmedge.h"

namespace {

const char *kUsage =
    "usage: mmedge-run BUNDLE --prompt TEXT [--image FILE]... [--max-tokens N] [--min-tokens N]\n"
    "                  [--temperature T] [--top-k K] [--top-p P] [--seed S] [--threads N] [--ctx N]\n"
    "                  [--batch N] [--exact] [--raw] [--no-hash] [--json]\n";

struct Output {
    bool json = false;
    std::string text;
};

int on_token(int32_t, const char *text, void *data) {
    auto *out = static_cast<Output *>(data);
    out->text += text;
    if (!out->json) {
        std::fputs(text, stdout);
        std::fflush(stdout);
    }
    return 1;
}

std::string json_string(const std::string &s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof(buf), "\\u%04x", c);
            out += buf;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

bool parse_int(const char *text, long lo, long hi, int32_t &out) {
    char *end = nullptr;
    long v = std::strtol(text, &end, 10);
    if (!*text || *end || v < lo || v > hi) return false;
    out = static_cast<int32_t>(v);
    return true;
}

// A seed as the Python runtime takes it: 0 .. 2^63 - 1.
bool parse_seed(const char *text, uint64_t &out) {
    char *end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(text, &end, 10);
    if (!*text || *end || *text == '-' || errno == ERANGE || v > 0x7FFFFFFFFFFFFFFFULL) return false;
    out = v;
    return true;
}

bool parse_float(const char *text, double &out) {
    char *end = nullptr;
    out = std::strtod(text, &end);
    return *text && !*end;
}

int refuse(const char *what, const std::string &message) {
    std::fprintf(stderr, "error: %s: %s\n", what, message.c_str());
    return 2;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
        std::fputs(kUsage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    const char *bundle = argv[1];
    std::vector<std::string> image_files;
    std::string prompt;
    bool have_prompt = false;
    Output out;
    mmedge_params params = mmedge_params_default();
    mmedge_generation_params gen = mmedge_generation_params_default();
    for (int i = 2; i < argc; ++i) {
        std::string a = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : nullptr;
        bool ok = true;
        if (a == "--json") out.json = true;
        else if (a == "--exact") params.exact = 1;
        else if (a == "--no-hash") params.check_hashes = 0;
        else if (a == "--raw") gen.raw_prompt = 1;
        else if (!value) ok = false;
        else if (a == "--image") { image_files.push_back(value); ++i; }
        else if (a == "--prompt") { prompt = value; have_prompt = true; ++i; }
        else if (a == "--max-tokens") { ok = parse_int(value, 1, 1 << 20, gen.max_new_tokens); ++i; }
        else if (a == "--min-tokens") { ok = parse_int(value, 0, 1 << 20, gen.min_new_tokens); ++i; }
        else if (a == "--temperature") { ok = parse_float(value, gen.temperature); ++i; }
        else if (a == "--top-k") { ok = parse_int(value, 0, 1 << 30, gen.top_k); ++i; }
        else if (a == "--top-p") { ok = parse_float(value, gen.top_p); ++i; }
        else if (a == "--seed") { ok = parse_seed(value, gen.seed); ++i; }
        else if (a == "--threads") { ok = parse_int(value, 0, 4096, params.n_threads); ++i; }
        else if (a == "--ctx") { ok = parse_int(value, 0, 1 << 24, params.n_ctx); ++i; }
        else if (a == "--batch") { ok = parse_int(value, 1, 1 << 20, params.n_batch); ++i; }
        else ok = false;
        if (!ok) {
            std::fprintf(stderr, "mmedge-run: bad or incomplete option %s\n%s", a.c_str(), kUsage);
            return 1;
        }
    }
    if (!have_prompt) {
        std::fprintf(stderr, "mmedge-run: --prompt is required\n%s", kUsage);
        return 1;
    }
    std::vector<DecodedImage> decoded(image_files.size());
    std::vector<mmedge_image> images;
    for (size_t i = 0; i < image_files.size(); ++i) {
        std::string error;
        if (!read_image_file(image_files[i], decoded[i], error)) return refuse("image", error);
        images.push_back({decoded[i].rgb.data(), decoded[i].width, decoded[i].height, decoded[i].width * 3});
    }
    mmedge_context *ctx = nullptr;
    mmedge_status st = mmedge_open(bundle, &params, &ctx);
    if (st != MMEDGE_OK) return refuse(mmedge_status_name(st), mmedge_last_error());
    std::vector<int32_t> tokens(static_cast<size_t>(gen.max_new_tokens));
    int32_t n = 0;
    mmedge_stats stats;
    st = mmedge_generate(ctx, images.data(), static_cast<int32_t>(images.size()), prompt.c_str(), &gen, on_token, &out,
                         tokens.data(), static_cast<int32_t>(tokens.size()), &n, &stats);
    if (st != MMEDGE_OK && st != MMEDGE_ERR_STOPPED) {
        int code = refuse(mmedge_status_name(st), mmedge_last_error());
        mmedge_close(ctx);
        return code;
    }
    if (out.json) {
        std::printf("{\"tokens\": [");
        for (int32_t i = 0; i < n; ++i) std::printf("%s%d", i ? ", " : "", tokens[i]);
        std::printf("], \"text\": %s, \"stats\": {\"load_s\": %.6f, \"preprocess_s\": %.6f, \"encode_s\": %.6f, "
                    "\"project_s\": %.6f, \"prefill_s\": %.6f, \"first_token_s\": %.6f, \"decode_s\": %.6f, "
                    "\"prompt_positions\": %d, \"new_tokens\": %d}}\n",
                    json_string(out.text).c_str(), stats.load_s, stats.preprocess_s, stats.encode_s, stats.project_s,
                    stats.prefill_s, stats.first_token_s, stats.decode_s, stats.prompt_positions, stats.new_tokens);
    } else {
        std::printf("\n");
        std::fprintf(stderr, "load %.3f s  preprocess %.3f s  encode %.3f s  project %.3f s  prefill %.3f s  "
                             "first token %.3f s  decode %.3f s (%d tokens)\n",
                     stats.load_s, stats.preprocess_s, stats.encode_s, stats.project_s, stats.prefill_s,
                     stats.first_token_s, stats.decode_s, stats.new_tokens);
    }
    mmedge_close(ctx);
    return 0;
}
