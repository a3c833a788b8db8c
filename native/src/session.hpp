// One opened bundle and its generation: the native counterpart of runtime/pipeline.py for the
// bundles native runs (ExecuTorch parts, "single" layout, causal attention).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "bundle.hpp"
#include "llm.hpp"
#include "mmedge.h"
#include "preprocess.hpp"
#include "tensor_part.hpp"

namespace mmedge {

constexpr int kMinImageSide = 8;                 // as runtime/images.py
constexpr int64_t kMaxImagePixels = 64000000;

class Session {
public:
    Session(const std::string &bundle_dir, const mmedge_params &params);

    // The full prompt text (chat frame applied, markers not yet expanded), as Pipeline.format.
    std::string format(const std::string &prompt, int n_images, bool raw) const;

    // Generated token ids; `stats` filled as it goes. Throws Error; a stop by the callback sets stats.stopped.
    std::vector<int32_t> generate(const std::vector<RgbImage> &images, const std::string &prompt,
                                  const mmedge_generation_params &params, mmedge_token_callback on_token, void *user_data,
                                  mmedge_stats &stats);

    const Bundle &bundle() const { return bundle_; }
    void request_stop() { llm_->stop_requested = true; }  // thread-safe: an atomic flag
    double load_s = 0.0;

private:
    std::vector<float> image_rows(const RgbImage &image, mmedge_stats &stats);
    std::vector<int32_t> tokenize_prompt(std::string text) const;

    Bundle bundle_;
    std::unique_ptr<TensorPart> encoder_, projector_;
    std::unique_ptr<Llm> llm_;
    std::vector<int32_t> eog_;
};

// RGB8 buffer (with its stride) -> a packed image, checking its size as the Python runtime does.
RgbImage image_from_buffer(const mmedge_image &image, int index);

}  // namespace mmedge
