/* mmedge native runtime: a C ABI over an mmedge bundle (manifest.json + compiled parts).
 *
 * It reads the same bundles as the Python runtime (`mmedge run`) and gives the same greedy tokens:
 * the bundle's integrity is checked (format version, paths inside the folder, no links, sizes,
 * sha256), images are preprocessed as mmedge's numpy code does, the encoder and projector run on
 * ExecuTorch (.pte, XNNPACK), and the image rows go straight into llama.cpp's KV cache.
 *
 * Rules of the ABI:
 *  - every function returns an mmedge_status (0 = MMEDGE_OK) or a value documented with it;
 *  - nothing crosses it as a C++ exception or an abort: bad bundles and bad inputs are codes, and
 *    mmedge_last_error() says what was expected and what to do (thread-local, valid until the
 *    next call on the same thread);
 *  - handles are opaque; one handle is used by one thread at a time (open several for parallelism).
 *
 * What runs natively: bundles whose encoder and projector are ExecuTorch (.pte) parts, one view
 * per image (layout "single", LLaVA-style, or "single-wrapped", Gemma 3) with causal attention or
 * bidirectional image runs (Gemma 3), and a GGUF LLM. Anything else is refused at open with
 * MMEDGE_ERR_UNSUPPORTED and a message naming the part or section.
 */
#ifndef MMEDGE_H
#define MMEDGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define MMEDGE_API __declspec(dllexport)
#else
#define MMEDGE_API __attribute__((visibility("default")))
#endif

#define MMEDGE_ABI_VERSION 2

typedef enum mmedge_status {
    MMEDGE_OK = 0,
    MMEDGE_ERR_INVALID_ARGUMENT = 1, /* a NULL pointer, a negative size, an out-of-range parameter */
    MMEDGE_ERR_IO = 2,               /* a file could not be read */
    MMEDGE_ERR_MANIFEST = 3,         /* manifest.json missing, not JSON, or a field missing / mistyped */
    MMEDGE_ERR_VERSION = 4,          /* a bundle format version this runtime does not read */
    MMEDGE_ERR_INTEGRITY = 5,        /* a path escaping the bundle, a link, a size or sha256 mismatch, an unlisted model file */
    MMEDGE_ERR_UNSUPPORTED = 6,      /* a part kind, layout or attention mode the native runtime does not run */
    MMEDGE_ERR_BACKEND = 7,          /* ExecuTorch or llama.cpp refused a part or failed while running it */
    MMEDGE_ERR_IMAGE = 8,            /* an image buffer of bad size, stride or pixel count */
    MMEDGE_ERR_PROMPT = 9,           /* markers != images, a prompt longer than the context, an empty prompt */
    MMEDGE_ERR_STOPPED = 10,         /* not an error: the token callback asked to stop (tokens so far are kept) */
    MMEDGE_ERR_INTERNAL = 11,        /* a bug: please report it with mmedge_last_error() */
    MMEDGE_ERR_FORMAT = 12           /* a part file malformed for its kind (a GGUF header), refused before its backend reads it */
} mmedge_status;

typedef struct mmedge_context mmedge_context; /* one opened bundle */

typedef struct mmedge_params {
    int32_t n_ctx;           /* context positions (default 4096) */
    int32_t n_batch;         /* llama.cpp batch (default 512) */
    int32_t n_threads;       /* threads for ExecuTorch and llama.cpp; 0 = the cores this process may use */
    int32_t exact;           /* 1: F32 KV cache, flash attention off (as `mmedge run --exact`); default 0 */
    int32_t check_hashes;    /* 1 (default): sha256 of every part against the manifest at open */
} mmedge_params;

typedef struct mmedge_image {
    const uint8_t *rgb;      /* width x height pixels, 3 bytes each (R, G, B) */
    int32_t width;
    int32_t height;
    int32_t stride;          /* bytes from one row to the next (>= 3 * width) */
} mmedge_image;

typedef struct mmedge_generation_params {
    int32_t max_new_tokens;  /* default 128 */
    int32_t min_new_tokens;  /* end-of-generation tokens are banned before this many; default 0 */
    double temperature;      /* 0 = greedy (the default); > 0 samples: numpy's algorithm and random stream, so a
                              * seed draws the tokens the Python runtime draws */
    int32_t top_k;           /* 0 = off */
    double top_p;            /* 1 = off */
    uint64_t seed;
    int32_t raw_prompt;      /* 1: the prompt is used as is (one marker per image), no chat template */
} mmedge_generation_params;

typedef struct mmedge_stats {
    double load_s;           /* mmedge_open: integrity checks and loading every part */
    double preprocess_s;     /* RGB -> normalized tiles */
    double encode_s;         /* the encoder */
    double project_s;        /* the projector */
    double prefill_s;        /* prompt tokens and image rows into the KV cache */
    double first_token_s;    /* from the call to the first sampled token */
    double decode_s;         /* from the first token to the last */
    int32_t prompt_positions;
    int32_t new_tokens;
    int32_t stopped;         /* 1 when the token callback stopped the generation */
} mmedge_stats;

/* Called with each generated token: its id and its text (UTF-8, NUL-terminated; a multi-byte
 * character split across tokens comes whole with the token that completes it; bytes that never
 * form one come as U+FFFD, so does a NUL byte (U+0000, which this string cannot carry), and what is
 * left unfinished at the end comes in a last call with token -1). Return nonzero to go on, 0 to
 * stop (mmedge_generate then returns MMEDGE_ERR_STOPPED). */
typedef int (*mmedge_token_callback)(int32_t token, const char *text, void *user_data);

MMEDGE_API int32_t mmedge_abi_version(void);
MMEDGE_API mmedge_params mmedge_params_default(void);
MMEDGE_API mmedge_generation_params mmedge_generation_params_default(void);

/* Open and check a bundle folder. On success *out is a new handle; on failure *out is NULL. */
MMEDGE_API mmedge_status mmedge_open(const char *bundle_dir, const mmedge_params *params, mmedge_context **out);

/* Answer `prompt` about `images` (n_images may be 0). The prompt holds one image marker (the
 * bundle's, see mmedge_image_marker) per image, or none: then the chat template places the images.
 * Generated token ids go to `tokens_out` (the first `tokens_capacity` of them; NULL to skip), their
 * count (all of them) to *n_tokens_out; `stats` (NULL to skip) gets per-stage times. A stop by the
 * callback returns MMEDGE_ERR_STOPPED with the tokens so far. */
MMEDGE_API mmedge_status mmedge_generate(mmedge_context *ctx, const mmedge_image *images, int32_t n_images,
                                         const char *prompt, const mmedge_generation_params *params,
                                         mmedge_token_callback on_token, void *user_data,
                                         int32_t *tokens_out, int32_t tokens_capacity, int32_t *n_tokens_out,
                                         mmedge_stats *stats);

/* The encoder input this runtime makes of `image`: float32 [3, *height, *width] (channels first) into
 * `out` (capacity in floats; NULL with capacity 0 asks for the shape only). For checking the
 * preprocessing against the Python runtime's, and for apps that run the encoder themselves. */
MMEDGE_API mmedge_status mmedge_preprocess_image(mmedge_context *ctx, const mmedge_image *image, float *out,
                                                 int64_t capacity, int32_t *height, int32_t *width);

/* Ask the generation running on `ctx` (in another thread) to stop: it returns MMEDGE_ERR_STOPPED
 * within one llama.cpp graph node during the prompt, or before the next token, with the tokens so
 * far. The only function that may be called on a handle while another thread uses it. */
MMEDGE_API void mmedge_stop(mmedge_context *ctx);

/* The bundle's image marker (e.g. "<image>"); owned by the handle. */
MMEDGE_API const char *mmedge_image_marker(const mmedge_context *ctx);

/* The text the last failing call on this thread reported ("" if none). */
MMEDGE_API const char *mmedge_last_error(void);

/* A short name for a status ("MMEDGE_ERR_INTEGRITY"). */
MMEDGE_API const char *mmedge_status_name(mmedge_status status);

MMEDGE_API void mmedge_close(mmedge_context *ctx);

#ifdef __cplusplus
}
#endif

#endif /* MMEDGE_H */
