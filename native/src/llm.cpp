#include "llm.hpp"

#include <cstdlib>
#include <functional>
#include <cstring>
#include <mutex>

#include "error.hpp"
#include "llama.h"

namespace mmedge {

namespace {

void quiet_log(ggml_log_level, const char *, void *) {}

void init_backend_once() {
    static std::once_flag once;
    std::call_once(once, [] {
        // llama.cpp logs every tensor at load time; MMEDGE_LLAMA_LOG=1 keeps it, as in Python.
        if (!std::getenv("MMEDGE_LLAMA_LOG")) llama_log_set(quiet_log, nullptr);
        llama_backend_init();
    });
}

bool abort_requested(void *data) { return static_cast<std::atomic<bool> *>(data)->load(); }

}  // namespace

Llm::Llm(const std::string &path, const LlmOptions &options) {
    init_backend_once();
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    model_ = llama_model_load_from_file(path.c_str(), mp);
    if (!model_) fail(MMEDGE_ERR_BACKEND, path + ": llama.cpp could not load this GGUF file; it is damaged or of an unsupported architecture");
    vocab_ = llama_model_get_vocab(model_);
    n_vocab_ = llama_vocab_n_tokens(vocab_);
    n_embd_ = llama_model_n_embd_inp(model_);
    int n_ctx_train = llama_model_n_ctx_train(model_);
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = options.n_ctx ? std::min(options.n_ctx, n_ctx_train) : n_ctx_train;
    cp.n_batch = options.n_batch;
    cp.n_ubatch = options.n_batch;
    cp.n_seq_max = 1;
    cp.n_threads = options.n_threads;
    cp.n_threads_batch = options.n_threads;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;  // as Python: exactness needs it off, CPU decodes faster so
    if (options.exact) {
        cp.type_k = GGML_TYPE_F32;
        cp.type_v = GGML_TYPE_F32;
    }
    ctx_ = llama_init_from_model(model_, cp);
    if (!ctx_) {
        llama_model_free(model_);
        model_ = nullptr;
        fail(MMEDGE_ERR_BACKEND, path + ": llama.cpp could not create a context (n_ctx=" + std::to_string(cp.n_ctx) + "); lower n_ctx");
    }
    n_ctx_ = static_cast<int>(llama_n_ctx(ctx_));
    n_batch_ = static_cast<int>(llama_n_batch(ctx_));
}

Llm::~Llm() {
    if (ctx_) llama_free(ctx_);
    if (model_) llama_model_free(model_);
}

std::vector<int32_t> Llm::tokenize(const std::string &text, bool add_special, bool parse_special) const {
    std::vector<llama_token> buf(text.size() + 8);
    int n = llama_tokenize(vocab_, text.data(), static_cast<int32_t>(text.size()), buf.data(), static_cast<int32_t>(buf.size()),
                           add_special, parse_special);
    if (n < 0) {
        buf.resize(-n);
        n = llama_tokenize(vocab_, text.data(), static_cast<int32_t>(text.size()), buf.data(), static_cast<int32_t>(buf.size()),
                           add_special, parse_special);
    }
    if (n < 0) fail(MMEDGE_ERR_BACKEND, "llama.cpp failed to tokenize the prompt (code " + std::to_string(n) + ")");
    return std::vector<int32_t>(buf.begin(), buf.begin() + n);
}

bool Llm::is_special(int32_t token) const {
    int attr = llama_vocab_get_attr(vocab_, token);
    return attr & (LLAMA_TOKEN_ATTR_CONTROL | LLAMA_TOKEN_ATTR_USER_DEFINED);
}

bool Llm::is_eog(int32_t token) const { return llama_vocab_is_eog(vocab_, token); }

std::string Llm::token_bytes(int32_t token) const {
    std::vector<char> buf(64);
    int n = llama_token_to_piece(vocab_, token, buf.data(), static_cast<int32_t>(buf.size()), 0, false);
    if (n < 0) {
        buf.resize(-n);
        n = llama_token_to_piece(vocab_, token, buf.data(), static_cast<int32_t>(buf.size()), 0, false);
    }
    return std::string(buf.data(), std::max(n, 0));
}

void Llm::reset(int first_position) {
    llama_memory_clear(llama_get_memory(ctx_), true);
    n_past_ = 0;
    next_pos_ = first_position;
}

void Llm::check_room(int n) const {
    if (n_past_ + n > n_ctx_)
        fail(MMEDGE_ERR_PROMPT, "the sequence needs " + std::to_string(n_past_ + n) + " positions but the context holds " +
                                    std::to_string(n_ctx_) + "; shorten the prompt, use fewer images, lower max_new_tokens or raise n_ctx");
}

void Llm::decode(void *batch_ptr, int n_tokens) {
    llama_batch &batch = *static_cast<llama_batch *>(batch_ptr);
    if (stop_requested.load()) throw Stopped();
    bool watched = n_tokens > 1;  // single-token steps are asked between steps, not inside
    if (watched) llama_set_abort_callback(ctx_, abort_requested, &stop_requested);
    int rc = llama_decode(ctx_, batch);
    if (watched) llama_set_abort_callback(ctx_, nullptr, nullptr);
    if (rc == 2 && watched) throw Stopped();  // llama_decode's "aborted"
    if (rc != 0) fail(MMEDGE_ERR_BACKEND, "llama_decode failed with code " + std::to_string(rc) + " at position " + std::to_string(n_past_));
}

std::vector<float> Llm::decode_rows(int n, int n_embd, bool want_last, const std::function<void(llama_batch &, int, int)> &fill) {
    check_room(n);
    std::vector<float> last;
    llama_batch b = llama_batch_init(n_batch_, n_embd, 1);
    try {
        for (int start = 0; start < n; start += n_batch_) {
            int m = std::min(n_batch_, n - start);
            fill(b, start, m);
            for (int i = 0; i < m; ++i) {
                b.pos[i] = next_pos_ + i;
                b.n_seq_id[i] = 1;
                b.seq_id[i][0] = 0;
                b.logits[i] = want_last && start + i == n - 1;
            }
            b.n_tokens = m;
            decode(&b, m);
            if (want_last && start + m == n) {
                const float *p = llama_get_logits_ith(ctx_, m - 1);
                if (!p) fail(MMEDGE_ERR_BACKEND, "llama.cpp returned no logits");
                last.assign(p, p + n_vocab_);
            }
            n_past_ += m;
            next_pos_ += m;
        }
    } catch (...) {
        llama_batch_free(b);
        throw;
    }
    llama_batch_free(b);
    return last;
}

std::vector<float> Llm::decode_tokens(const std::vector<int32_t> &tokens, bool want_last) {
    for (int32_t t : tokens)
        if (t < 0 || t >= n_vocab_)
            fail(MMEDGE_ERR_PROMPT, "token id " + std::to_string(t) + " is outside the vocabulary (0.." + std::to_string(n_vocab_ - 1) + ")");
    return decode_rows(static_cast<int>(tokens.size()), 0, want_last, [&](llama_batch &b, int start, int m) {
        for (int i = 0; i < m; ++i) b.token[i] = tokens[start + i];
    });
}

std::vector<float> Llm::decode_embeddings(const float *rows, int n, bool want_last, bool causal) {
    auto fill = [&](llama_batch &b, int start, int m) {
        std::memcpy(b.embd, rows + static_cast<size_t>(start) * n_embd_, sizeof(float) * static_cast<size_t>(m) * n_embd_);
    };
    if (causal) return decode_rows(n, n_embd_, want_last, fill);
    if (n > n_batch_)
        fail(MMEDGE_ERR_PROMPT, "a run of " + std::to_string(n) + " positions must be decoded bidirectionally in one batch, but the "
                                "batch holds " + std::to_string(n_batch_) + "; raise n_batch to at least " + std::to_string(n));
    // Back to causal however the decode ends (a stop, an error): text after the run is causal.
    struct CausalAgain {
        llama_context *ctx;
        ~CausalAgain() { llama_set_causal_attn(ctx, true); }
    } restore{ctx_};
    llama_set_causal_attn(ctx_, false);
    return decode_rows(n, n_embd_, want_last, fill);
}

}  // namespace mmedge
