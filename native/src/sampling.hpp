// The next token from one row of logits: the algorithm of runtime/sampling.py step by step
// (temperature -> stable sort -> top-k -> softmax -> top-p -> Generator.choice over the kept
// tokens), with numpy's random stream (numpy_random.hpp) and numpy's pairwise summation, so a
// seeded draw picks the token Python picks. Greedy (temperature 0) is the first maximum.
#pragma once

#include <cstdint>
#include <vector>

#include "numpy_random.hpp"

namespace mmedge {

class Sampler {
public:
    Sampler(double temperature, int top_k, double top_p, uint64_t seed);
    // `banned` ids get probability 0. Throws Error(MMEDGE_ERR_BACKEND) on NaN logits.
    int32_t operator()(std::vector<float> logits, const std::vector<int32_t> *banned);

private:
    double temperature_;
    int top_k_;
    double top_p_;
    NumpyGenerator rng_;
};

}  // namespace mmedge
