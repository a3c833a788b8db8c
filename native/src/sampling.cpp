#include "sampling.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "error.hpp"

namespace mmedge {

namespace {

// numpy's sum of a contiguous float64 array (pairwise_sum in loops_utils.h): blocks of up to 128
// summed in 8 lanes, larger arrays split in halves. The order of additions shows in the last bits.
double pairwise_sum(const double *a, size_t n) {
    if (n < 8) {
        double sum = 0.0;
        for (size_t i = 0; i < n; ++i) sum += a[i];
        return sum;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; ++j) r[j] = a[j];
        size_t i = 8;
        for (; i < n - n % 8; i += 8)
            for (int j = 0; j < 8; ++j) r[j] += a[i + j];
        double sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; ++i) sum += a[i];
        return sum;
    }
    size_t half = n / 2;
    half -= half % 8;
    return pairwise_sum(a, half) + pairwise_sum(a + half, n - half);
}

}  // namespace

Sampler::Sampler(double temperature, int top_k, double top_p, uint64_t seed)
    : temperature_(temperature), top_k_(top_k), top_p_(top_p), rng_(seed) {}

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
    if (temperature_ == 0.0) return static_cast<int32_t>(std::max_element(x.begin(), x.end()) - x.begin());  // the first maximum, as np.argmax
    for (double &v : x) v /= temperature_;
    std::vector<int32_t> order(x.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return x[a] > x[b]; });
    if (top_k_ > 0 && static_cast<size_t>(top_k_) < order.size()) order.resize(top_k_);
    std::vector<double> p(order.size());
    for (size_t i = 0; i < order.size(); ++i) p[i] = std::exp(x[order[i]] - x[order[0]]);
    double total = pairwise_sum(p.data(), p.size());
    for (double &v : p) v /= total;
    if (top_p_ < 1.0) {
        double mass = 0.0;  // np.cumsum: in order
        size_t cutoff = p.size();
        for (size_t i = 0; i < p.size(); ++i) {
            mass += p[i];
            if (mass >= top_p_) {  // the smallest prefix whose mass reaches top_p (searchsorted, left)
                cutoff = i + 1;
                break;
            }
        }
        order.resize(cutoff);
        p.resize(cutoff);
        double kept = pairwise_sum(p.data(), p.size());
        for (double &v : p) v /= kept;
    }
    // Generator.choice(n, p=p): cdf = cumsum(p) / cdf[-1], then the first index whose cdf exceeds
    // one draw of random() (searchsorted, right).
    std::vector<double> cdf(p.size());
    double running = 0.0;
    for (size_t i = 0; i < p.size(); ++i) cdf[i] = running += p[i];
    const double last = cdf.back();
    for (double &v : cdf) v /= last;
    double u = rng_.random();
    size_t pick = static_cast<size_t>(std::upper_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
    return order[std::min(pick, order.size() - 1)];
}

}  // namespace mmedge
