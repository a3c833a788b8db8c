#include "session.hpp"

#include <chrono>
#include <cstring>
#include <thread>

#include <sched.h>

#include "error.hpp"
#include "gguf_check.hpp"
#include "sampling.hpp"
#include "utf8.hpp"

namespace mmedge {

namespace {

double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int usable_cores() {  // as runtime/threads.py: the affinity mask, not the machine's core count
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
    return std::max(1u, std::thread::hardware_concurrency());
}

size_t count(const std::string &text, const std::string &needle) {
    size_t n = 0;
    for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) ++n;
    return n;
}

std::string replace_each(const std::string &text, const std::string &needle, const std::string &with) {
    std::string out;
    size_t pos = 0;
    for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, pos)) {
        out.append(text, pos, at - pos);
        out += with;
        pos = at + needle.size();
    }
    out.append(text, pos, std::string::npos);
    return out;
}

}  // namespace

RgbImage image_from_buffer(const mmedge_image &image, int index) {
    const std::string what = "images[" + std::to_string(index) + "]";
    if (!image.rgb) fail(MMEDGE_ERR_IMAGE, what + ": rgb is NULL");
    if (image.width < kMinImageSide || image.height < kMinImageSide)
        fail(MMEDGE_ERR_IMAGE, what + ": " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                                   " pixels is too small; images need at least " + std::to_string(kMinImageSide) + " pixels on each side");
    if (static_cast<int64_t>(image.width) * image.height > kMaxImagePixels)
        fail(MMEDGE_ERR_IMAGE, what + ": " + std::to_string(image.width) + "x" + std::to_string(image.height) + " exceeds the limit of " +
                                   std::to_string(kMaxImagePixels) + " pixels; downscale it first");
    if (image.stride < 3 * image.width)
        fail(MMEDGE_ERR_IMAGE, what + ": stride " + std::to_string(image.stride) + " is less than 3 x width (" +
                                   std::to_string(3 * image.width) + "); rows are RGB8, 3 bytes per pixel");
    RgbImage out;
    out.width = image.width;
    out.height = image.height;
    out.pixels.resize(static_cast<size_t>(image.width) * image.height * 3);
    for (int y = 0; y < image.height; ++y)
        std::memcpy(&out.pixels[static_cast<size_t>(y) * image.width * 3], image.rgb + static_cast<size_t>(y) * image.stride,
                    static_cast<size_t>(image.width) * 3);
    return out;
}

Session::Session(const std::string &bundle_dir, const mmedge_params &params) {
    double t0 = now();
    if (params.n_ctx < 0 || params.n_batch < 1 || params.n_threads < 0)
        fail(MMEDGE_ERR_INVALID_ARGUMENT, "params: n_ctx >= 0, n_batch >= 1 and n_threads >= 0 are required");
    bundle_ = open_bundle(bundle_dir, params.check_hashes != 0);
    if (!resample_supported(bundle_.preprocess.resample))
        fail(MMEDGE_ERR_UNSUPPORTED, "preprocess.image.resample: '" + bundle_.preprocess.resample +
                                         "' is not a filter the native runtime implements (box, bilinear, hamming, bicubic, lanczos)");
    // llama.cpp's GGUF loader trusts the header it reads: it is checked first, as in Python.
    check_gguf_file(bundle_.root + "/" + bundle_.llm.file);
    int threads = params.n_threads ? params.n_threads : usable_cores();
    encoder_ = std::make_unique<TensorPart>(bundle_.root + "/" + bundle_.encoder.file, bundle_.encoder, threads);
    projector_ = std::make_unique<TensorPart>(bundle_.root + "/" + bundle_.projector.file, bundle_.projector, threads);
    LlmOptions o;
    o.n_ctx = params.n_ctx;
    o.n_batch = params.n_batch;
    o.n_threads = threads;
    o.exact = params.exact != 0;
    llm_ = std::make_unique<Llm>(bundle_.root + "/" + bundle_.llm.file, o);
    if (llm_->n_embd() != bundle_.slot.embedding_dim)
        fail(MMEDGE_ERR_BACKEND, "the LLM takes rows of width " + std::to_string(llm_->n_embd()) + ", the image slot gives " +
                                     std::to_string(bundle_.slot.embedding_dim) + "; the parts do not belong together, re-export");
    for (int32_t t = 0; t < llm_->n_vocab(); ++t)
        if (llm_->is_eog(t)) eog_.push_back(t);
    load_s = now() - t0;
}

std::string Session::format(const std::string &prompt, int n_images, bool raw) const {
    const std::string &marker = bundle_.slot.marker;
    size_t found = count(prompt, marker);
    if (raw) {
        if (found != static_cast<size_t>(n_images))
            fail(MMEDGE_ERR_PROMPT, "a raw prompt needs one '" + marker + "' per image: found " + std::to_string(found) + ", images " +
                                        std::to_string(n_images) + "; put one marker where each image goes, or drop raw_prompt");
        return prompt;
    }
    if (found && found != static_cast<size_t>(n_images))
        fail(MMEDGE_ERR_PROMPT, "the prompt has " + std::to_string(found) + " image marker(s) '" + marker + "' but " +
                                    std::to_string(n_images) + " image(s) were given; use one marker per image, or none at all "
                                    "to let the chat template place the images");
    const PromptFrame &f = bundle_.prompt;
    if (!f.present)
        fail(MMEDGE_ERR_UNSUPPORTED, "prompt.single_turn: the bundle has no flattened chat template (exported before the native "
                                     "runtime had one, or its template cannot be flattened to strings); re-export it, or give "
                                     "a raw prompt (raw_prompt = 1) already in the chat format");
    const std::string user = f.strip ? strip_whitespace(prompt) : prompt;
    if (found || n_images == 0) return f.before + user + f.after;
    if (!f.places_images)
        fail(MMEDGE_ERR_PROMPT, "this bundle's chat template places images in a way the native runtime does not reproduce; put "
                                "one '" + marker + "' in the prompt where each image goes");
    std::string images;
    for (int i = 0; i < n_images; ++i) images += f.image;
    return f.before + images + user + f.after;
}

std::vector<int32_t> Session::tokenize_prompt(std::string text) const {
    const PromptFrame &f = bundle_.prompt;
    if (f.prepend_space && !text.empty() && text[0] != ' ') {
        auto first = llm_->tokenize(text, false, true);
        if (!first.empty() && !llm_->is_special(first[0])) text = " " + text;
    }
    return llm_->tokenize(text, f.add_bos, true);
}

std::vector<float> Session::image_rows(const RgbImage &image, mmedge_stats &stats) {
    double t0 = now();
    int h = 0, w = 0;
    Tensor pixels;
    pixels.data = preprocess_image(image, bundle_.preprocess, h, w);
    pixels.shape = {1, 3, h, w};
    stats.preprocess_s += now() - t0;
    t0 = now();
    Tensor features = encoder_->run(pixels);
    stats.encode_s += now() - t0;
    t0 = now();
    Tensor rows = projector_->run(features);
    stats.project_s += now() - t0;
    const int n = bundle_.slot.tokens_per_image, d = bundle_.slot.embedding_dim;
    if (rows.data.size() != static_cast<size_t>(n) * d)
        fail(MMEDGE_ERR_BACKEND, "the projector gave " + std::to_string(rows.data.size()) + " values, the image slot needs " +
                                     std::to_string(n) + " rows of " + std::to_string(d) + "; re-export the bundle");
    if (bundle_.slot.embedding_divisor != 1.0)
        for (float &v : rows.data) v = v / static_cast<float>(bundle_.slot.embedding_divisor);
    return rows.data;
}

std::vector<int32_t> Session::generate(const std::vector<RgbImage> &images, const std::string &prompt,
                                       const mmedge_generation_params &params, mmedge_token_callback on_token, void *user_data,
                                       mmedge_stats &stats) {
    if (params.max_new_tokens < 1 || params.min_new_tokens < 0 || params.min_new_tokens > params.max_new_tokens)
        fail(MMEDGE_ERR_INVALID_ARGUMENT, "max_new_tokens must be >= 1 and 0 <= min_new_tokens <= max_new_tokens");
    if (!(params.temperature >= 0) || params.top_k < 0 || !(params.top_p > 0 && params.top_p <= 1))
        fail(MMEDGE_ERR_INVALID_ARGUMENT, "temperature >= 0, top_k >= 0 and 0 < top_p <= 1 are required");
    stats.load_s = load_s;
    const double t_start = now();
    const ImageSlot &slot = bundle_.slot;
    std::string text = format(prompt, static_cast<int>(images.size()), params.raw_prompt != 0);
    // Each marker becomes the image's token positions (prompt.expand_media_markers; the layouts'
    // text: runtime/layouts/single.py).
    const bool wrapped = slot.layout == "single-wrapped";
    std::string expansion = wrapped ? slot.before : "";
    for (int i = 0; i < slot.tokens_per_image; ++i) expansion += wrapped ? slot.image_token : slot.marker;
    if (wrapped) expansion += slot.after;
    std::vector<int32_t> ids = tokenize_prompt(replace_each(text, slot.marker, expansion));

    // The plan: runs of text tokens and of image rows, in prompt order (prompt.plan_tokens).
    struct Run { bool image; std::vector<int32_t> tokens; int first_row = 0, rows = 0; };
    std::vector<Run> plan;
    int rows_seen = 0;
    for (int32_t id : ids) {
        bool is_image = id == slot.marker_token_id;
        if (plan.empty() || plan.back().image != is_image) plan.push_back(Run{is_image, {}, rows_seen, 0});
        if (is_image) {
            ++plan.back().rows;
            ++rows_seen;
        } else {
            plan.back().tokens.push_back(id);
        }
    }
    const int n_rows = static_cast<int>(images.size()) * slot.tokens_per_image;
    if (rows_seen != n_rows)
        fail(MMEDGE_ERR_PROMPT, "the tokenized prompt holds " + std::to_string(rows_seen) + " image-token positions but the images "
                                    "give " + std::to_string(n_rows) + " embedding rows; the prompt text contains image tokens of its own");
    if (plan.empty()) fail(MMEDGE_ERR_PROMPT, "the prompt is empty after formatting; give some text or an image");
    stats.prompt_positions = static_cast<int32_t>(ids.size());
    if (static_cast<int64_t>(ids.size()) + params.max_new_tokens > llm_->n_ctx())
        fail(MMEDGE_ERR_PROMPT, "the prompt takes " + std::to_string(ids.size()) + " positions and up to " +
                                    std::to_string(params.max_new_tokens) + " new tokens are asked, but the context holds " +
                                    std::to_string(llm_->n_ctx()) + "; shorten the prompt, lower max_new_tokens or raise n_ctx");

    std::vector<float> rows;
    rows.reserve(static_cast<size_t>(n_rows) * slot.embedding_dim);
    for (const RgbImage &image : images) {
        std::vector<float> r = image_rows(image, stats);
        rows.insert(rows.end(), r.begin(), r.end());
    }

    double t0 = now();
    llm_->stop_requested = false;
    llm_->reset(bundle_.prompt.first_position);
    std::vector<int32_t> out;
    std::string pending;
    double t_decode = 0;
    try {
        std::vector<float> logits;
        for (size_t k = 0; k < plan.size(); ++k) {
            bool last = k + 1 == plan.size();
            const Run &run = plan[k];
            logits = run.image ? llm_->decode_embeddings(&rows[static_cast<size_t>(run.first_row) * slot.embedding_dim], run.rows,
                                                         last, slot.attention == "causal")
                               : llm_->decode_tokens(run.tokens, last);
        }
        const double t_prefilled = now();
        stats.prefill_s = t_prefilled - t0;

        Sampler sample(params.temperature, params.top_k, params.top_p, params.seed);
        for (int step = 0; step < params.max_new_tokens; ++step) {
            int32_t token = sample(logits, step < params.min_new_tokens ? &eog_ : nullptr);
            if (step == 0) {
                t_decode = now();
                stats.first_token_s = t_decode - t_start;
            }
            if (llm_->is_eog(token)) break;
            out.push_back(token);
            pending += llm_->token_bytes(token);
            std::string piece = take_utf8(pending);
            if (on_token && !on_token(token, piece.c_str(), user_data)) {
                stats.stopped = 1;
                break;
            }
            if (step + 1 < params.max_new_tokens) logits = llm_->decode_tokens({token}, true);
        }
    } catch (const Stopped &) {  // mmedge_stop from another thread: the tokens so far stand
        stats.stopped = 1;
        if (!stats.prefill_s) stats.prefill_s = now() - t0;
    }
    if (!pending.empty() && on_token && !stats.stopped) on_token(-1, decode_utf8_replacing(pending).c_str(), user_data);
    stats.decode_s = t_decode ? now() - t_decode : 0.0;
    stats.new_tokens = static_cast<int32_t>(out.size());
    return out;
}

}  // namespace mmedge
