#include "utf8.hpp"

namespace mmedge {

namespace {

const char kReplacement[] = "\xEF\xBF\xBD";

// The allowed range of the second byte after lead byte `b` (Unicode Table 3-7) and the sequence
// length; length 0 for a byte that cannot start a sequence.
int sequence(unsigned char b, unsigned char &lo, unsigned char &hi) {
    lo = 0x80;
    hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b == 0xE0) { lo = 0xA0; return 3; }
    if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) return 3;
    if (b == 0xED) { hi = 0x9F; return 3; }
    if (b == 0xF0) { lo = 0x90; return 4; }
    if (b >= 0xF1 && b <= 0xF3) return 4;
    if (b == 0xF4) { hi = 0x8F; return 4; }
    return 0;
}

// Decodes `bytes`; returns false at the first ill-formed sequence when `strict`.
bool decode(const std::string &bytes, std::string &out, bool strict) {
    size_t i = 0, n = bytes.size();
    while (i < n) {
        unsigned char b = static_cast<unsigned char>(bytes[i]);
        if (b < 0x80) {
            out += static_cast<char>(b);
            ++i;
            continue;
        }
        unsigned char lo, hi;
        int len = sequence(b, lo, hi);
        size_t k = 1;
        if (len) {
            while (k < static_cast<size_t>(len) && i + k < n) {
                unsigned char c = static_cast<unsigned char>(bytes[i + k]);
                if (c < lo || c > hi) break;
                lo = 0x80;
                hi = 0xBF;
                ++k;
            }
        }
        if (len && k == static_cast<size_t>(len)) {
            out.append(bytes, i, k);
            i += k;
            continue;
        }
        if (strict) return false;
        out += kReplacement;  // one for the maximal subpart; the byte that broke it starts afresh
        i += len ? k : 1;
    }
    return true;
}

}  // namespace

bool is_utf8(const std::string &bytes) {
    std::string out;
    return decode(bytes, out, true);
}

std::string decode_utf8_replacing(const std::string &bytes) {
    std::string out;
    decode(bytes, out, false);
    return out;
}

std::string take_utf8(std::string &pending) {
    size_t n = pending.size();
    for (size_t cut = n; cut + 4 > n && cut != static_cast<size_t>(-1); --cut) {
        std::string out;
        if (decode(pending.substr(0, cut), out, true)) {
            pending.erase(0, cut);
            return out;
        }
        if (cut == 0) break;
    }
    std::string out = decode_utf8_replacing(pending);
    pending.clear();
    return out;
}

}  // namespace mmedge
