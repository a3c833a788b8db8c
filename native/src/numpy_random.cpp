#include "numpy_random.hpp"

#include <array>

namespace mmedge {

namespace {

// SeedSequence's constants (numpy/random/bit_generator.pyx); all arithmetic is modulo 2^32.
constexpr uint32_t kInitA = 0x43b0d7e5, kMultA = 0x931e8875, kInitB = 0x8b51f9dd, kMultB = 0x58f38ded;
constexpr uint32_t kMixMultL = 0xca01f9dd, kMixMultR = 0x4973f715;
constexpr int kPoolSize = 4;

uint32_t hashmix(uint32_t value, uint32_t &hash_const) {
    value ^= hash_const;
    hash_const *= kMultA;
    value *= hash_const;
    return value ^ (value >> 16);
}

uint32_t mix(uint32_t x, uint32_t y) {
    uint32_t result = kMixMultL * x - kMixMultR * y;
    return result ^ (result >> 16);
}

// SeedSequence(seed).generate_state(4, uint64): the entropy is the seed's 32-bit words, low first.
std::array<uint64_t, 4> seed_sequence_state(uint64_t seed) {
    uint32_t entropy[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
    int n_entropy = seed >> 32 ? 2 : 1;
    std::array<uint32_t, kPoolSize> pool{};
    uint32_t hash_const = kInitA;
    for (int i = 0; i < kPoolSize; ++i) pool[i] = hashmix(i < n_entropy ? entropy[i] : 0, hash_const);
    for (int src = 0; src < kPoolSize; ++src)
        for (int dst = 0; dst < kPoolSize; ++dst)
            if (src != dst) pool[dst] = mix(pool[dst], hashmix(pool[src], hash_const));
    std::array<uint64_t, 4> out{};
    hash_const = kInitB;
    for (int i = 0; i < 8; ++i) {
        uint32_t value = pool[i % kPoolSize] ^ hash_const;
        hash_const *= kMultB;
        value *= hash_const;
        value ^= value >> 16;
        out[i / 2] |= static_cast<uint64_t>(value) << (32 * (i % 2));  // uint32 pairs viewed as uint64, little-endian
    }
    return out;
}

constexpr unsigned __int128 kMultiplier = (static_cast<unsigned __int128>(2549297995355413924ULL) << 64) | 4865540595714422341ULL;

}  // namespace

NumpyGenerator::NumpyGenerator(uint64_t seed) {
    auto words = seed_sequence_state(seed);
    unsigned __int128 initial = (static_cast<unsigned __int128>(words[0]) << 64) | words[1];
    unsigned __int128 sequence = (static_cast<unsigned __int128>(words[2]) << 64) | words[3];
    inc_ = (sequence << 1) | 1;  // pcg_setseq_128_srandom_r
    step();
    state_ += initial;
    step();
}

void NumpyGenerator::step() { state_ = state_ * kMultiplier + inc_; }

uint64_t NumpyGenerator::next64() {
    step();
    uint64_t high = static_cast<uint64_t>(state_ >> 64), low = static_cast<uint64_t>(state_);
    uint64_t x = high ^ low;
    unsigned rotation = static_cast<unsigned>(high >> 58);
    return (x >> rotation) | (x << ((64 - rotation) & 63));
}

double NumpyGenerator::random() { return static_cast<double>(next64() >> 11) * (1.0 / 9007199254740992.0); }

}  // namespace mmedge
