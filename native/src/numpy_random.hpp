// numpy's default random stream, so a seeded native run draws what the Python runtime draws:
// `numpy.random.default_rng(seed)` is PCG64 (128-bit LCG, XSL-RR output) seeded through
// SeedSequence's hash mixing, and `Generator.random()` is the top 53 bits of one 64-bit output.
// The tests check the first doubles against numpy's for several seeds (through sampled tokens).
#pragma once

#include <cstdint>

namespace mmedge {

class NumpyGenerator {
public:
    explicit NumpyGenerator(uint64_t seed);
    uint64_t next64();
    double random();  // in [0, 1), as Generator.random()

private:
    void step();
    unsigned __int128 state_ = 0, inc_ = 0;
};

}  // namespace mmedge
