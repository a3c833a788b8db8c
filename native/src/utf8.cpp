#include "utf8.hpp"

#include <cstdint>
#include <vector>

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
            // U+0000 cannot travel in a NUL-terminated string: it comes as U+FFFD (Python does the same).
            if (b == 0) out += kReplacement;
            else out += static_cast<char>(b);
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

namespace {

// str.isspace() in Python 3.11 (checked against it by the tests through the prompt frame).
bool is_python_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// The code point starting at text[i] of valid UTF-8, and its length.
uint32_t code_point(const std::string &text, size_t i, size_t &length) {
    unsigned char b = static_cast<unsigned char>(text[i]);
    length = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    uint32_t cp = length == 1 ? b : b & (0x7F >> length);
    for (size_t k = 1; k < length; ++k) cp = (cp << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
    return cp;
}

}  // namespace

std::string strip_whitespace(const std::string &text) {
    if (!is_utf8(text)) return text;
    std::vector<size_t> starts;  // the first byte of every code point
    for (size_t i = 0, n = 0; i < text.size(); i += n) {
        starts.push_back(i);
        code_point(text, i, n);
    }
    size_t first = 0, last = starts.size();
    size_t n = 0;
    while (first < last && is_python_space(code_point(text, starts[first], n))) ++first;
    while (last > first && is_python_space(code_point(text, starts[last - 1], n))) --last;
    if (first == last) return "";
    size_t end = last < starts.size() ? starts[last] : text.size();
    return text.substr(starts[first], end - starts[first]);
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
