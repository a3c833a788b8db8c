// The GGUF LLM on llama.cpp: tokens and image embedding rows into one KV cache (one sequence),
// as runtime/llamacpp.py does it: the same context settings, batches of n_batch rows, logits of
// the last row only. Every llama.cpp call is checked first, because llama.cpp aborts the whole
// process on some misuse (a batch larger than n_batch, a position past the context).
#pragma once

#include <atomic>
#include <functional>
#include <cstdint>
#include <string>
#include <vector>

struct llama_model;
struct llama_context;
struct llama_vocab;
struct llama_batch;

namespace mmedge {

struct LlmOptions {
    int n_ctx = 4096;
    int n_batch = 512;
    int n_threads = 1;
    bool exact = false;
};

class Llm {
public:
    Llm(const std::string &path, const LlmOptions &options);
    ~Llm();
    Llm(const Llm &) = delete;
    Llm &operator=(const Llm &) = delete;

    int n_vocab() const { return n_vocab_; }
    int n_embd() const { return n_embd_; }
    int n_ctx() const { return n_ctx_; }
    int n_past() const { return n_past_; }

    std::vector<int32_t> tokenize(const std::string &text, bool add_special, bool parse_special = true) const;
    bool is_special(int32_t token) const;  // control or user-defined: what prompt parsing splits at
    bool is_eog(int32_t token) const;
    std::string token_bytes(int32_t token) const;

    void reset(int first_position);
    // Append tokens / rows [n, n_embd]; with want_last, returns the last row's logits.
    std::vector<float> decode_tokens(const std::vector<int32_t> &tokens, bool want_last);
    // causal = false: the rows attend to each other both ways (and to everything before them), in
    // one batch (MMEDGE_ERR_PROMPT if n > n_batch), as Gemma 3's image runs need.
    std::vector<float> decode_embeddings(const float *rows, int n, bool want_last, bool causal = true);

    // Checked between graph nodes of multi-row batches (llama.cpp's abort callback) and before
    // every batch: a stop request lands within milliseconds.
    std::atomic<bool> stop_requested{false};

private:
    // n rows in batches of n_batch: `fill` puts rows [start, start + m) into the batch (tokens or
    // embeddings); positions, sequence ids and the last row's logits flag are set here.
    std::vector<float> decode_rows(int n, int n_embd, bool want_last,
                                   const std::function<void(llama_batch &, int, int)> &fill);
    void check_room(int n) const;
    void decode(void *batch, int n_tokens);

    llama_model *model_ = nullptr;
    llama_context *ctx_ = nullptr;
    const llama_vocab *vocab_ = nullptr;
    int n_vocab_ = 0, n_embd_ = 0, n_ctx_ = 0, n_batch_ = 0;
    int n_past_ = 0, next_pos_ = 0;
};

class Stopped : public std::exception {};  // stop_requested was seen (control flow, not an error)

}  // namespace mmedge
