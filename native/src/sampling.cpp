#include "sampling.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "error.hpp"

namespace mmedge {

Sampler::Sampler(float temperature, int top_k, float top_p, uint64_t seed)
    : temperature_(temperature), top_k_(top_k), top_p_(top_p), state_(seed) {}

double Sampler::uniform() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (z >> 11) * (1.0 / 9007199254740992.0);  // 53 bits: [0, 1)
}

int32_t Sampler::operator()(std::vector<float> logits, const std::vector<int32_t> *banned) {
    const double neg_inf = -std::numeric_limits<double>::infinity();
    std::vector<double> x(logits.begin(), logits.end());
    for (double v : x)
        if (std::isnan(v)) fail(MMEDGE_ERR_BACKEND, "the model returned NaN logits; the LLM part is broken (re-export it, or try F32/F16)");
    if (banned) {
        for (int32_t id : *banned)
            if (id >= 0 && static_cast<size_t>(id) < x.size()) x[id] = neg_inf;
        if (std::all_of(x.begin(), x.end(), [&](double v) { return v == neg_inf; }))
            fail(MMEDGE_ERR_INVALID_ARGUMENT, "every token is banned; nothing can be sampled, lower min_new_tokens");
    }
    if (temperature_ == 0.0f) return static_cast<int32_t>(std::max_element(x.begin(), x.end()) - x.begin());  // the first maximum, as np.argmax
    for (double &v : x) v /= temperature_;
    std::vector<int32_t> order(x.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return x[a] > x[b]; });
    if (top_k_ > 0 && static_cast<size_t>(top_k_) < order.size()) order.resize(top_k_);
    std::vector<double> p(order.size());
    for (size_t i = 0; i < order.size(); ++i) p[i] = std::exp(x[order[i]] - x[order[0]]);
    double total = std::accumulate(p.begin(), p.end(), 0.0);
    for (double &v : p) v /= total;
    if (top_p_ < 1.0f) {
        double mass = 0.0;
        size_t cutoff = p.size();
        for (size_t i = 0; i < p.size(); ++i) {
            mass += p[i];
            if (mass >= top_p_) {  // the smallest prefix whose mass reaches top_p
                cutoff = i + 1;
                break;
            }
        }
        order.resize(cutoff);
        p.resize(cutoff);
    }
    double u = uniform() * std::accumulate(p.begin(), p.end(), 0.0), cdf = 0.0;
    for (size_t i = 0; i < p.size(); ++i) {
        cdf += p[i];
        if (u < cdf) return order[i];
    }
    return order.back();
}

}  // namespace mmedge
