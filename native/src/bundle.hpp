// Opening a bundle: manifest.json read and validated, the same integrity checks as the Python
// runtime (mmedge/bundle.py) before any model parser sees a byte, and the sections the native
// runtime uses, typed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mmedge {

constexpr const char *kFormatName = "mmedge-bundle";
constexpr int kFormatVersion = 1;
constexpr int64_t kMaxManifestBytes = 16 * 1024 * 1024;

struct PartSpec {
    std::string label;  // "parts.vision_encoder", "alternatives.projector[0]": for messages
    std::string role, file, kind, precision, sha256;
    int64_t size_bytes = 0;
    int64_t max_batch = 64;  // ExecuTorch parts: the largest batch the program was exported for
};

struct ImagePreprocess {
    std::string resize_mode;  // "shortest_edge" or "exact"
    int shortest_edge = 0, height = 0, width = 0;
    std::string resample;  // PIL filter name
    bool crop = false;
    int crop_height = 0, crop_width = 0;
    bool rescale = false;
    double rescale_factor = 1.0;
    bool normalize = false;
    float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
};

struct ImageSlot {
    std::string marker;
    int32_t marker_token_id = 0;
    int32_t tokens_per_image = 0;
    int32_t embedding_dim = 0;
    std::string attention = "causal";
    std::string layout = "single";
    // "single-wrapped" (Gemma 3): each marker becomes before + image_token x tokens_per_image + after.
    std::string image_token, before, after;
    double embedding_divisor = 1.0;
};

struct PromptFrame {
    bool present = false;  // the manifest has prompt.single_turn (exports since the native runtime)
    std::string before, after;
    bool places_images = false;  // `image` is set: a prompt without markers gets image * n first
    bool strip = false;          // the template trims the user text (Gemma 3's): str.strip() it first
    std::string image;
    bool add_bos = true;
    bool prepend_space = false;
    int32_t first_position = 0;
};

struct Bundle {
    std::string root;
    std::string family;
    std::string modality = "image";
    std::vector<PartSpec> parts;  // every part and alternative, as listed
    PartSpec encoder, projector, llm;  // the ones the native runtime runs
    ImagePreprocess preprocess;
    ImageSlot slot;
    PromptFrame prompt;
};

// Throws mmedge::Error: MMEDGE_ERR_MANIFEST / _VERSION / _INTEGRITY / _IO for a bad bundle,
// MMEDGE_ERR_UNSUPPORTED for a good bundle the native runtime cannot run (naming what).
Bundle open_bundle(const std::string &dir, bool check_hashes);

}  // namespace mmedge
