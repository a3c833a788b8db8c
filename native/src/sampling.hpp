// The next token from one row of logits: the algorithm of runtime/sampling.py (temperature ->
// stable sort -> top-k -> softmax -> top-p -> a draw from the kept tokens). Greedy (temperature 0)
// is exact and equals Python's; a draw uses this file's own generator (splitmix64), not numpy's
// PCG64 stream, so sampled tokens differ from Python's for the same seed.
#pragma once

#include <cstdint>
#include <vector>

namespace mmedge {

class Sampler {
public:
    Sampler(float temperature, int top_k, float top_p, uint64_t seed);
    // `banned` ids get probability 0. Throws Error(MMEDGE_ERR_BACKEND) on NaN logits.
    int32_t operator()(std::vector<float> logits, const std::vector<int32_t> *banned);

private:
    double uniform();
    float temperature_;
    int top_k_;
    float top_p_;
    uint64_t state_;
};

}  // namespace mmedge
