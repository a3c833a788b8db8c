// An encoder or projector part on ExecuTorch's C++ runtime (the .pte the exporter lowered to
// XNNPACK), loaded with full internal-consistency verification.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bundle.hpp"

namespace mmedge {

struct Tensor {
    std::vector<float> data;
    std::vector<int32_t> shape;
};

class TensorPart {
public:
    // `threads`: 1 runs without ExecuTorch's thread pool; more runs on the process-wide pool, sized
    // to `threads` unless another loaded part holds it (then it keeps its size).
    TensorPart(const std::string &path, const PartSpec &spec, int threads);
    ~TensorPart();
    Tensor run(const Tensor &input);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace mmedge
