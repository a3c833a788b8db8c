// The C ABI (include/mmedge.h): every entry point catches everything and returns a status.
#include "mmedge.h"

#include <cstring>
#include <new>
#include <string>

#include "error.hpp"
#include "session.hpp"

struct mmedge_context {
    std::unique_ptr<mmedge::Session> session;
};

namespace {

thread_local std::string last_error;

mmedge_status report(mmedge_status status, const std::string &message) {
    last_error = message;
    return status;
}

// Runs `body`, turning whatever it throws into a status and last_error.
template <typename Body>
mmedge_status guarded(Body &&body) {
    try {
        last_error.clear();
        return body();
    } catch (const mmedge::Error &e) {
        return report(e.status(), e.what());
    } catch (const std::bad_alloc &) {
        return report(MMEDGE_ERR_INTERNAL, "out of memory");
    } catch (const std::exception &e) {
        return report(MMEDGE_ERR_INTERNAL, std::string("internal error: ") + e.what());
    } catch (...) {
        return report(MMEDGE_ERR_INTERNAL, "internal error: an unknown exception");
    }
}

}  // namespace

extern "C" {

int32_t mmedge_abi_version(void) { return MMEDGE_ABI_VERSION; }

mmedge_params mmedge_params_default(void) {
    mmedge_params p;
    p.n_ctx = 4096;
    p.n_batch = 512;
    p.n_threads = 0;
    p.exact = 0;
    p.check_hashes = 1;
    return p;
}

mmedge_generation_params mmedge_generation_params_default(void) {
    mmedge_generation_params p;
    p.max_new_tokens = 128;
    p.min_new_tokens = 0;
    p.temperature = 0.0;
    p.top_k = 0;
    p.top_p = 1.0;
    p.seed = 0;
    p.raw_prompt = 0;
    return p;
}

mmedge_status mmedge_open(const char *bundle_dir, const mmedge_params *params, mmedge_context **out) {
    if (out) *out = nullptr;
    return guarded([&] {
        if (!bundle_dir || !out) return report(MMEDGE_ERR_INVALID_ARGUMENT, "mmedge_open: bundle_dir and out must not be NULL");
        mmedge_params p = params ? *params : mmedge_params_default();
        auto ctx = std::make_unique<mmedge_context>();
        ctx->session = std::make_unique<mmedge::Session>(bundle_dir, p);
        *out = ctx.release();
        return MMEDGE_OK;
    });
}

mmedge_status mmedge_generate(mmedge_context *ctx, const mmedge_image *images, int32_t n_images, const char *prompt,
                              const mmedge_generation_params *params, mmedge_token_callback on_token, void *user_data,
                              int32_t *tokens_out, int32_t tokens_capacity, int32_t *n_tokens_out, mmedge_stats *stats) {
    if (n_tokens_out) *n_tokens_out = 0;
    return guarded([&] {
        if (!ctx || !ctx->session || !prompt)
            return report(MMEDGE_ERR_INVALID_ARGUMENT, "mmedge_generate: ctx and prompt must not be NULL");
        if (n_images < 0 || (n_images > 0 && !images))
            return report(MMEDGE_ERR_INVALID_ARGUMENT, "mmedge_generate: n_images must be >= 0, with images given when > 0");
        if (tokens_capacity < 0 || (tokens_capacity > 0 && !tokens_out))
            return report(MMEDGE_ERR_INVALID_ARGUMENT, "mmedge_generate: tokens_capacity must be >= 0, with tokens_out given when > 0");
        std::vector<mmedge::RgbImage> pictures;
        for (int32_t i = 0; i < n_images; ++i) pictures.push_back(mmedge::image_from_buffer(images[i], i));
        mmedge_generation_params p = params ? *params : mmedge_generation_params_default();
        mmedge_stats s;
        std::memset(&s, 0, sizeof(s));
        std::vector<int32_t> tokens = ctx->session->generate(pictures, prompt, p, on_token, user_data, s);
        if (stats) *stats = s;
        int32_t n = static_cast<int32_t>(tokens.size());
        if (tokens_out) std::memcpy(tokens_out, tokens.data(), sizeof(int32_t) * std::min(n, tokens_capacity));
        if (n_tokens_out) *n_tokens_out = n;
        return s.stopped ? MMEDGE_ERR_STOPPED : MMEDGE_OK;
    });
}

mmedge_status mmedge_preprocess_image(mmedge_context *ctx, const mmedge_image *image, float *out, int64_t capacity,
                                      int32_t *height, int32_t *width) {
    return guarded([&] {
        if (!ctx || !ctx->session || !image || !height || !width || capacity < 0 || (capacity > 0 && !out))
            return report(MMEDGE_ERR_INVALID_ARGUMENT, "mmedge_preprocess_image: ctx, image, height and width must not be NULL");
        int h = 0, w = 0;
        std::vector<float> pixels =
            mmedge::preprocess_image(mmedge::image_from_buffer(*image, 0), ctx->session->bundle().preprocess, h, w);
        *height = h;
        *width = w;
        if (out && static_cast<int64_t>(pixels.size()) > capacity)
            return report(MMEDGE_ERR_INVALID_ARGUMENT, "out holds " + std::to_string(capacity) + " floats, the image needs " +
                                                           std::to_string(pixels.size()));
        if (out) std::memcpy(out, pixels.data(), sizeof(float) * pixels.size());
        return MMEDGE_OK;
    });
}

void mmedge_stop(mmedge_context *ctx) {
    if (ctx && ctx->session) ctx->session->request_stop();
}

const char *mmedge_image_marker(const mmedge_context *ctx) {
    if (!ctx || !ctx->session) return "";
    return ctx->session->bundle().slot.marker.c_str();
}

const char *mmedge_last_error(void) { return last_error.c_str(); }

const char *mmedge_status_name(mmedge_status status) {
    switch (status) {
        case MMEDGE_OK: return "MMEDGE_OK";
        case MMEDGE_ERR_INVALID_ARGUMENT: return "MMEDGE_ERR_INVALID_ARGUMENT";
        case MMEDGE_ERR_IO: return "MMEDGE_ERR_IO";
        case MMEDGE_ERR_MANIFEST: return "MMEDGE_ERR_MANIFEST";
        case MMEDGE_ERR_VERSION: return "MMEDGE_ERR_VERSION";
        case MMEDGE_ERR_INTEGRITY: return "MMEDGE_ERR_INTEGRITY";
        case MMEDGE_ERR_UNSUPPORTED: return "MMEDGE_ERR_UNSUPPORTED";
        case MMEDGE_ERR_BACKEND: return "MMEDGE_ERR_BACKEND";
        case MMEDGE_ERR_IMAGE: return "MMEDGE_ERR_IMAGE";
        case MMEDGE_ERR_PROMPT: return "MMEDGE_ERR_PROMPT";
        case MMEDGE_ERR_STOPPED: return "MMEDGE_ERR_STOPPED";
        case MMEDGE_ERR_INTERNAL: return "MMEDGE_ERR_INTERNAL";
        case MMEDGE_ERR_FORMAT: return "MMEDGE_ERR_FORMAT";
    }
    return "MMEDGE_ERR_UNKNOWN";
}

void mmedge_close(mmedge_context *ctx) {
    try {
        delete ctx;
    } catch (...) {
        // destructors of llama.cpp / ExecuTorch objects do not throw; nothing may cross the ABI anyway
    }
}

}  // extern "C"
