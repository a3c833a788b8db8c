#include "json.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "error.hpp"

namespace mmedge::json {

const Value *Value::find(const std::string &key) const {
    if (kind != Kind::Object) return nullptr;
    auto it = object.find(key);
    return it == object.end() ? nullptr : &it->second;
}

const char *kind_name(Kind kind) {
    switch (kind) {
        case Kind::Null: return "null";
        case Kind::Bool: return "a boolean";
        case Kind::Number: return "a number";
        case Kind::String: return "a string";
        case Kind::Array: return "an array";
        case Kind::Object: return "an object";
    }
    return "?";
}

namespace {

class Parser {
public:
    Parser(const std::string &text, const std::string &what, int max_depth)
        : s_(text), what_(what), max_depth_(max_depth) {}

    Value document() {
        Value v = value(0);
        skip_space();
        if (pos_ != s_.size()) error("the end of the document");
        return v;
    }

private:
    const std::string &s_;
    const std::string &what_;
    int max_depth_;
    size_t pos_ = 0;

    [[noreturn]] void error(const std::string &expected) {
        fail(MMEDGE_ERR_MANIFEST, what_ + ": not valid JSON at byte " + std::to_string(pos_) + " (expected " + expected +
                                      "); the bundle is damaged: re-export it");
    }

    void skip_space() {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
    }

    bool take(const char *word) {
        size_t n = std::char_traits<char>::length(word);
        if (s_.compare(pos_, n, word) == 0) {
            pos_ += n;
            return true;
        }
        return false;
    }

    Value value(int depth) {
        if (depth > max_depth_) error("at most " + std::to_string(max_depth_) + " levels of nesting");
        skip_space();
        if (pos_ >= s_.size()) error("a value");
        Value v;
        char c = s_[pos_];
        if (c == '{') {
            v.kind = Kind::Object;
            ++pos_;
            skip_space();
            if (pos_ < s_.size() && s_[pos_] == '}') {
                ++pos_;
                return v;
            }
            while (true) {
                skip_space();
                if (pos_ >= s_.size() || s_[pos_] != '"') error("a string key");
                std::string key = string();
                skip_space();
                if (pos_ >= s_.size() || s_[pos_] != ':') error("':'");
                ++pos_;
                if (v.object.count(key)) error("no duplicate key (\"" + key.substr(0, 80) + "\" twice)");
                v.object.emplace(std::move(key), value(depth + 1));
                skip_space();
                if (pos_ < s_.size() && s_[pos_] == ',') { ++pos_; continue; }
                if (pos_ < s_.size() && s_[pos_] == '}') { ++pos_; return v; }
                error("',' or '}'");
            }
        }
        if (c == '[') {
            v.kind = Kind::Array;
            ++pos_;
            skip_space();
            if (pos_ < s_.size() && s_[pos_] == ']') {
                ++pos_;
                return v;
            }
            while (true) {
                v.array.push_back(value(depth + 1));
                skip_space();
                if (pos_ < s_.size() && s_[pos_] == ',') { ++pos_; continue; }
                if (pos_ < s_.size() && s_[pos_] == ']') { ++pos_; return v; }
                error("',' or ']'");
            }
        }
        if (c == '"') {
            v.kind = Kind::String;
            v.string = string();
            return v;
        }
        if (take("true")) { v.kind = Kind::Bool; v.boolean = true; return v; }
        if (take("false")) { v.kind = Kind::Bool; return v; }
        if (take("null")) return v;
        if (c == '-' || (c >= '0' && c <= '9')) return number();
        error("a value");
    }

    Value number() {
        size_t start = pos_;
        bool integral = true;
        if (s_[pos_] == '-') ++pos_;
        if (pos_ >= s_.size() || !isdigit(static_cast<unsigned char>(s_[pos_]))) error("a digit");
        if (s_[pos_] == '0') {
            ++pos_;
        } else {
            while (pos_ < s_.size() && isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
        }
        if (pos_ < s_.size() && s_[pos_] == '.') {
            integral = false;
            ++pos_;
            if (pos_ >= s_.size() || !isdigit(static_cast<unsigned char>(s_[pos_]))) error("a digit after '.'");
            while (pos_ < s_.size() && isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
        }
        if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
            integral = false;
            ++pos_;
            if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
            if (pos_ >= s_.size() || !isdigit(static_cast<unsigned char>(s_[pos_]))) error("an exponent");
            while (pos_ < s_.size() && isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
        }
        std::string text = s_.substr(start, pos_ - start);
        Value v;
        v.kind = Kind::Number;
        v.number = std::strtod(text.c_str(), nullptr);
        if (!std::isfinite(v.number)) error("a finite number");
        if (integral) {
            errno = 0;
            long long i = std::strtoll(text.c_str(), nullptr, 10);
            if (errno == 0) {
                v.is_integer = true;
                v.integer = i;
            }
        }
        return v;
    }

    unsigned hex4() {
        if (pos_ + 4 > s_.size()) error("four hex digits");
        unsigned code = 0;
        for (int i = 0; i < 4; ++i) {
            char c = s_[pos_++];
            code <<= 4;
            if (c >= '0' && c <= '9') code |= c - '0';
            else if (c >= 'a' && c <= 'f') code |= c - 'a' + 10;
            else if (c >= 'A' && c <= 'F') code |= c - 'A' + 10;
            else error("a hex digit");
        }
        return code;
    }

    static void append_utf8(std::string &out, unsigned cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }

    // Checks one UTF-8 sequence at pos_ (no overlongs, no surrogates, at most U+10FFFF) and copies it.
    void utf8_char(std::string &out) {
        unsigned char c = static_cast<unsigned char>(s_[pos_]);
        int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : -1;
        if (extra < 0 || c > 0xF4 || c == 0xC0 || c == 0xC1) error("UTF-8 text");
        if (pos_ + extra >= s_.size()) error("UTF-8 text");
        unsigned cp = c & (0x3F >> extra);
        for (int i = 1; i <= extra; ++i) {
            unsigned char d = static_cast<unsigned char>(s_[pos_ + i]);
            if ((d & 0xC0) != 0x80) error("UTF-8 text");
            cp = (cp << 6) | (d & 0x3F);
        }
        static const unsigned kMin[] = {0, 0x80, 0x800, 0x10000};
        if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) error("UTF-8 text");
        out.append(s_, pos_, extra + 1);
        pos_ += extra + 1;
    }

    std::string string() {
        ++pos_;  // the opening quote
        std::string out;
        while (true) {
            if (pos_ >= s_.size()) error("a closing '\"'");
            unsigned char c = static_cast<unsigned char>(s_[pos_]);
            if (c == '"') {
                ++pos_;
                return out;
            }
            if (c < 0x20) error("no control character inside a string");
            if (c >= 0x80) {
                utf8_char(out);
                continue;
            }
            if (c != '\\') {
                out += static_cast<char>(c);
                ++pos_;
                continue;
            }
            if (++pos_ >= s_.size()) error("an escape");
            char e = s_[pos_++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    unsigned cp = hex4();
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        if (!take("\\u")) error("a low surrogate");
                        unsigned low = hex4();
                        if (low < 0xDC00 || low > 0xDFFF) error("a low surrogate");
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                        error("no lone low surrogate");
                    }
                    append_utf8(out, cp);
                    break;
                }
                default: error("a valid escape");
            }
        }
    }
};

}  // namespace

Value parse(const std::string &text, const std::string &what, int max_depth) {
    return Parser(text, what, max_depth).document();
}

}  // namespace mmedge::json
