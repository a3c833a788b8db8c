#include "gguf_check.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <vector>

#include "error.hpp"
#include "utf8.hpp"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "GGUF is read as little-endian, as the host's own integers");

namespace mmedge {

namespace {

using u128 = unsigned __int128;

constexpr uint64_t kMaxDims = 4;  // GGML_MAX_DIMS
constexpr uint64_t kMaxKeyBytes = 65535;
constexpr uint64_t kMaxDim = uint64_t(1) << 62;
constexpr uint64_t kDefaultAlignment = 32;
// The smallest encodings, for bounding counts by the file's length: a key/value pair is at least a
// length (8) + 1 key byte + a type (4) + a 1-byte value; a tensor info at least a length (8) + 1
// name byte + n_dims (4) + one dim (8) + type (4) + offset (8).
constexpr uint64_t kMinKvBytes = 14, kMinTensorInfoBytes = 33;
// Past this, a byte count is reported as "more than 2^120" (4 dimensions of 2^62 overflow 128 bits).
constexpr u128 kSaturated = u128(1) << 120;

enum ValueType : uint32_t { U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64, kValueTypeCount };
// Names and item sizes (0: variable) of GGUF's value types, as runtime/gguf_check.py's VALUE_TYPES.
const struct {
    const char *name;
    uint64_t size;
} kValueTypes[kValueTypeCount] = {{"uint8", 1},  {"int8", 1},    {"uint16", 2}, {"int16", 2}, {"uint32", 4},
                                  {"int32", 4},  {"float32", 4}, {"bool", 1},   {"string", 0}, {"array", 0},
                                  {"uint64", 8}, {"int64", 8},   {"float64", 8}};

// ggml tensor types: id -> name, elements per block, bytes per block; runtime/gguf_check.py's
// GGML_TYPES (a test compares the two tables).
struct GgmlType {
    const char *name;
    uint64_t block, block_bytes;
};
const std::map<uint32_t, GgmlType> kGgmlTypes = {
    {0, {"F32", 1, 4}},        {1, {"F16", 1, 2}},       {2, {"Q4_0", 32, 18}},     {3, {"Q4_1", 32, 20}},
    {6, {"Q5_0", 32, 22}},     {7, {"Q5_1", 32, 24}},    {8, {"Q8_0", 32, 34}},     {9, {"Q8_1", 32, 36}},
    {10, {"Q2_K", 256, 84}},   {11, {"Q3_K", 256, 110}}, {12, {"Q4_K", 256, 144}},  {13, {"Q5_K", 256, 176}},
    {14, {"Q6_K", 256, 210}},  {15, {"Q8_K", 256, 292}}, {16, {"IQ2_XXS", 256, 66}}, {17, {"IQ2_XS", 256, 74}},
    {18, {"IQ3_XXS", 256, 98}}, {19, {"IQ1_S", 256, 50}}, {20, {"IQ4_NL", 32, 18}},  {21, {"IQ3_S", 256, 110}},
    {22, {"IQ2_S", 256, 82}},  {23, {"IQ4_XS", 256, 136}}, {24, {"I8", 1, 1}},       {25, {"I16", 1, 2}},
    {26, {"I32", 1, 4}},       {27, {"I64", 1, 8}},      {28, {"F64", 1, 8}},       {29, {"IQ1_M", 256, 56}},
    {30, {"BF16", 1, 2}},      {34, {"TQ1_0", 256, 54}}, {35, {"TQ2_0", 256, 66}},  {39, {"MXFP4", 32, 17}},
    {40, {"NVFP4", 64, 36}},   {41, {"Q1_0", 128, 18}},  {42, {"Q2_0", 64, 18}},
};
const char *const kVocabArrays[] = {"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"};
const char *const kSpecialIds[] = {"bos", "eos", "eot", "eom", "unknown", "separator", "padding", "mask", "cls"};

// --- Python's text for values, so the messages read as the Python runtime's -------------------

std::string decimal(u128 v) {
    if (v >= kSaturated) return "more than 2^120";
    std::string s;
    do {
        s += static_cast<char>('0' + static_cast<int>(v % 10));
        v /= 10;
    } while (v);
    std::reverse(s.begin(), s.end());
    return s;
}

std::string decimal_signed(__int128 v) { return v < 0 ? "-" + decimal(static_cast<u128>(-v)) : decimal(static_cast<u128>(v)); }

// repr() of a str (valid UTF-8): quoted, control characters escaped.
std::string repr_text(const std::string &s) {
    char quote = s.find('\'') != std::string::npos && s.find('"') == std::string::npos ? '"' : '\'';
    std::string out(1, quote);
    for (unsigned char c : s) {
        if (c == '\\' || c == static_cast<unsigned char>(quote)) {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c == '\n') out += "\\n";
        else if (c == '\r') out += "\\r";
        else if (c == '\t') out += "\\t";
        else if (c < 0x20 || c == 0x7F) {
            char buf[5];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        } else out += static_cast<char>(c);
    }
    return out + quote;
}

// repr() of bytes: b'...', non-ASCII and control bytes as \xNN.
std::string repr_bytes(const unsigned char *p, size_t n) {
    std::string out = "b'";
    for (size_t i = 0; i < n; ++i) {
        unsigned char c = p[i];
        if (c == '\\' || c == '\'') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c == '\n') out += "\\n";
        else if (c == '\r') out += "\\r";
        else if (c == '\t') out += "\\t";
        else if (c < 0x20 || c >= 0x7F) {
            char buf[5];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        } else out += static_cast<char>(c);
    }
    return out + "'";
}

// repr() of a float: the shortest digits that read back, fixed notation for exponents -4..15.
std::string repr_float(double v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
    char buf[40];
    int precision = 1;
    for (; precision < 17; ++precision) {
        std::snprintf(buf, sizeof buf, "%.*e", precision - 1, v);
        if (std::strtod(buf, nullptr) == v) break;
    }
    std::snprintf(buf, sizeof buf, "%.*e", precision - 1, v);
    std::string text(buf);
    std::string sign = text[0] == '-' ? "-" : "";
    if (!sign.empty()) text.erase(0, 1);
    size_t e = text.find('e');
    int exponent = std::atoi(text.c_str() + e + 1);
    std::string digits = text.substr(0, e);
    digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
    if (exponent < -4 || exponent >= 16) {
        std::string mantissa = digits.substr(0, 1) + (digits.size() > 1 ? "." + digits.substr(1) : "");
        std::snprintf(buf, sizeof buf, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
        return sign + mantissa + buf;
    }
    if (exponent < 0) return sign + "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
    if (digits.size() <= static_cast<size_t>(exponent) + 1)
        return sign + digits + std::string(static_cast<size_t>(exponent) + 1 - digits.size(), '0') + ".0";
    return sign + digits.substr(0, static_cast<size_t>(exponent) + 1) + "." + digits.substr(static_cast<size_t>(exponent) + 1);
}

// --- the parse -----------------------------------------------------------------------------------

// A metadata value, summarised as the Python check keeps it: integers (any width), other scalars
// by their repr, arrays by item type and length.
struct Value {
    uint32_t type = 0;
    bool is_integer = false;
    __int128 integer = 0;
    std::string repr;
    bool is_array = false;
    uint32_t item_type = 0;
    uint64_t count = 0;
};

u128 pad(u128 n, uint64_t alignment) { return (n + alignment - 1) / alignment * alignment; }

class Cursor {
public:
    Cursor(const unsigned char *data, uint64_t size, const std::string &where) : data_(data), size_(size), where_(where) {}

    [[noreturn]] void fail(const std::string &what) const { fail_at(pos, what); }

    [[noreturn]] void fail_at(u128 at, const std::string &what) const {
        mmedge::fail(MMEDGE_ERR_FORMAT, where_ + ": not a valid GGUF file: " + what + " (at byte " + decimal(at) +
                                            "); the file is damaged or was not written by a GGUF writer: re-export the bundle");
    }

    uint64_t left() const { return size_ - pos; }

    void need(u128 n, const std::string &what) const {
        if (n > left()) fail(what + " needs " + decimal(n) + " bytes but " + decimal(left()) + " are left");
    }

    template <class T>
    T take(const std::string &what) {
        need(sizeof(T), what);
        T value;
        std::memcpy(&value, data_ + pos, sizeof value);
        pos += sizeof value;
        return value;
    }

    std::string raw_string(const std::string &what, uint64_t limit = UINT64_MAX) {
        uint64_t n = take<uint64_t>("the length of " + what);
        if (n > limit) fail(what + " is " + decimal(n) + " bytes long, more than the " + decimal(limit) + " allowed");
        need(n, what);
        std::string raw(reinterpret_cast<const char *>(data_ + pos), static_cast<size_t>(n));
        pos += n;
        return raw;
    }

    std::string text(const std::string &what, uint64_t limit) {
        std::string raw = raw_string(what, limit);
        if (!is_utf8(raw)) fail(what + " is not UTF-8");
        return raw;
    }

    template <class Seen>
    std::string unique_name(const std::string &what, const Seen &seen, const std::string &repeated) {
        std::string name = text("a " + what, kMaxKeyBytes);
        if (name.empty()) fail("a " + what + " is empty");
        if (seen.count(name)) fail(what + " " + repr_text(name) + " " + repeated);
        return name;
    }

    // A vocabulary holds up to ~260k strings: lengths are walked, nothing is copied.
    void skip_strings(uint64_t count, const std::string &what) {
        for (uint64_t i = 0; i < count; ++i) {
            if (left() < 8) fail_at(pos, "an item of " + what + " runs past the end of the file");
            uint64_t n;
            std::memcpy(&n, data_ + pos, 8);
            if (n > left() - 8) fail_at(u128(pos) + 8 + n, "an item of " + what + " runs past the end of the file");
            pos += 8 + n;
        }
    }

    void skip(uint64_t n) { pos += n; }
    const unsigned char *data() const { return data_; }
    uint64_t size() const { return size_; }

    uint64_t pos = 0;

private:
    const unsigned char *data_;
    uint64_t size_;
    const std::string &where_;
};

template <class T>
Value integer_value(Cursor &c, uint32_t type, const std::string &what) {
    Value v;
    v.type = type;
    v.is_integer = true;
    v.integer = c.take<T>(what);
    v.repr = decimal_signed(v.integer);
    return v;
}

template <class T>
Value float_value(Cursor &c, uint32_t type, const std::string &what) {
    Value v;
    v.type = type;
    v.repr = repr_float(static_cast<double>(c.take<T>(what)));
    return v;
}

Value read_value(Cursor &c, uint32_t type, const std::string &key) {
    const std::string quoted = repr_text(key), what = "the value of " + quoted;
    switch (type) {
        case U8: return integer_value<uint8_t>(c, type, what);
        case I8: return integer_value<int8_t>(c, type, what);
        case U16: return integer_value<uint16_t>(c, type, what);
        case I16: return integer_value<int16_t>(c, type, what);
        case U32: return integer_value<uint32_t>(c, type, what);
        case I32: return integer_value<int32_t>(c, type, what);
        case U64: return integer_value<uint64_t>(c, type, what);
        case I64: return integer_value<int64_t>(c, type, what);
        case F32: return float_value<float>(c, type, what);
        case F64: return float_value<double>(c, type, what);
        case BOOL: {
            uint8_t b = c.take<uint8_t>(what);
            if (b > 1) c.fail("metadata " + quoted + " is a bool holding " + std::to_string(b));
            Value v;
            v.type = type;
            v.repr = b ? "True" : "False";
            return v;
        }
        case STRING: {
            Value v;
            v.type = type;
            v.repr = repr_text(decode_utf8_replacing(c.raw_string("the string " + quoted)));
            return v;
        }
        case ARRAY: {
            Value v;
            v.type = type;
            v.is_array = true;
            v.item_type = c.take<uint32_t>("the item type of " + quoted);
            v.count = c.take<uint64_t>("the length of " + quoted);
            if (v.item_type == ARRAY) c.fail("metadata " + quoted + " is an array of arrays, which GGUF readers do not take");
            if (v.item_type >= kValueTypeCount)
                c.fail("metadata " + quoted + " is an array of value type " + std::to_string(v.item_type) + "; known types are 0..12");
            const std::string count = decimal(v.count);
            if (v.item_type == STRING) {  // each at least its 8-byte length
                c.need(u128(v.count) * 8, "the " + count + " strings of " + quoted);
                c.skip_strings(v.count, quoted);
            } else {
                u128 nbytes = u128(v.count) * kValueTypes[v.item_type].size;
                c.need(nbytes, "the " + count + " items of " + quoted);
                c.skip(static_cast<uint64_t>(nbytes));
            }
            v.repr = "ArrayInfo(item_type='" + std::string(kValueTypes[v.item_type].name) + "', count=" + count + ")";
            return v;
        }
        default:
            c.fail("metadata " + quoted + " has value type " + std::to_string(type) + "; known types are 0..12");
    }
}

struct TensorInfo {
    std::string name;
    std::vector<uint64_t> dims;  // ne0 first, as GGUF stores them
    uint32_t type;
    uint64_t offset;
};

TensorInfo read_tensor(Cursor &c, const std::set<std::string> &names) {
    TensorInfo t;
    t.name = c.unique_name("tensor name", names, "is listed twice");
    const std::string quoted = repr_text(t.name);
    uint32_t n_dims = c.take<uint32_t>("the dimension count of " + quoted);
    if (n_dims > kMaxDims)
        c.fail("tensor " + quoted + " has " + std::to_string(n_dims) + " dimensions; GGUF tensors have at most 4");
    for (uint32_t i = 0; i < n_dims; ++i) t.dims.push_back(c.take<uint64_t>("a dimension of " + quoted));
    if (t.dims.empty()) t.dims.push_back(1);
    if (std::any_of(t.dims.begin(), t.dims.end(), [](uint64_t d) { return d > kMaxDim; })) {
        std::string list;
        for (uint64_t d : t.dims) list += (list.empty() ? "" : ", ") + decimal(d);
        c.fail("tensor " + quoted + " has dimensions [" + list + "]; each must be at most 2^62");
    }
    t.type = c.take<uint32_t>("the type of " + quoted);
    t.offset = c.take<uint64_t>("the offset of " + quoted);
    return t;
}

void check_vocabulary(const Cursor &c, const std::map<std::string, Value> &metadata) {
    auto tokens = metadata.find(kVocabArrays[0]);
    if (tokens == metadata.end()) return;
    const Value &vocab = tokens->second;
    if (!vocab.is_array || vocab.item_type != STRING) c.fail(std::string(kVocabArrays[0]) + " must be an array of strings");
    if (vocab.count == 0) c.fail(std::string(kVocabArrays[0]) + " is empty");
    const std::string n = decimal(vocab.count);
    for (const char *key : {kVocabArrays[1], kVocabArrays[2]}) {
        auto other = metadata.find(key);
        if (other != metadata.end() && (!other->second.is_array || other->second.count != vocab.count)) {
            std::string count = other->second.is_array ? decimal(other->second.count) : "not an array";
            c.fail(std::string(key) + " has " + count + " entries but the vocabulary has " + n + " tokens");
        }
    }
    for (const char *name : kSpecialIds) {
        std::string key = std::string("tokenizer.ggml.") + name + "_token_id";
        auto id = metadata.find(key);
        if (id == metadata.end()) continue;
        const Value &v = id->second;
        if (!v.is_integer || v.integer < 0 || v.integer >= static_cast<__int128>(vocab.count))
            c.fail(key + " is " + v.repr + ", outside the vocabulary of " + n + " tokens");
    }
}

}  // namespace

void check_gguf_bytes(const unsigned char *data, uint64_t size, const std::string &where) {
    if (size < 24)
        fail(MMEDGE_ERR_FORMAT, where + ": not a valid GGUF file: " + std::to_string(size) +
                                    " bytes is shorter than a GGUF header (24)");
    Cursor c(data, size, where);
    if (std::memcmp(data, "GGUF", 4) != 0) c.fail("the first bytes are " + repr_bytes(data, 4) + ", not the GGUF magic b'GGUF'");
    c.pos = 4;
    uint32_t version = c.take<uint32_t>("the version");
    if (version != 2 && version != 3) {
        uint32_t swapped = __builtin_bswap32(version);
        std::string hint = swapped == 2 || swapped == 3 ? " (a big-endian file: llama.cpp reads little-endian GGUF only)" : "";
        c.fail("version " + std::to_string(version) + hint + "; readable versions are [2, 3]");
    }
    uint64_t n_tensors = c.take<uint64_t>("the tensor count"), n_kv = c.take<uint64_t>("the metadata count");
    if (u128(n_kv) * kMinKvBytes > size || u128(n_tensors) * kMinTensorInfoBytes > size)
        c.fail(decimal(n_tensors) + " tensors and " + decimal(n_kv) + " metadata entries cannot fit in a " + decimal(size) +
               "-byte file");

    std::map<std::string, Value> metadata;
    for (uint64_t i = 0; i < n_kv; ++i) {
        std::string key = c.unique_name("metadata key", metadata, "appears twice");
        uint32_t type = c.take<uint32_t>("the value type of " + repr_text(key));
        Value value = read_value(c, type, key);
        if (key == "general.alignment" && type != U32)
            c.fail(std::string("general.alignment has value type ") + kValueTypes[type].name + "; it must be uint32");
        metadata.emplace(std::move(key), std::move(value));
    }

    uint64_t alignment = kDefaultAlignment;
    auto aligned = metadata.find("general.alignment");
    if (aligned != metadata.end()) alignment = static_cast<uint64_t>(aligned->second.integer);
    if (alignment < 1 || (alignment & (alignment - 1)))
        c.fail("general.alignment is " + decimal(alignment) + "; it must be a power of two");

    std::vector<TensorInfo> infos;
    std::set<std::string> names;
    for (uint64_t i = 0; i < n_tensors; ++i) {
        infos.push_back(read_tensor(c, names));
        names.insert(infos.back().name);
    }
    u128 data_start = pad(c.pos, alignment);
    if (data_start > size)
        c.fail("the data section would start at byte " + decimal(data_start) + ", past the end of the file (" + decimal(size) + ")");

    u128 expected = 0;
    for (const TensorInfo &t : infos) {
        const std::string quoted = repr_text(t.name);
        auto type = kGgmlTypes.find(t.type);
        if (type == kGgmlTypes.end())
            c.fail("tensor " + quoted + " has ggml type " + std::to_string(t.type) + ", which no known ggml has");
        const GgmlType &g = type->second;
        if (t.dims[0] % g.block)
            c.fail("tensor " + quoted + " (" + g.name + ") has rows of " + decimal(t.dims[0]) + " elements, not whole blocks of " +
                   decimal(g.block));
        u128 n_elements = 1;  // saturates: four dimensions of 2^62 need 248 bits
        for (uint64_t d : t.dims) n_elements = d && n_elements > kSaturated / d ? kSaturated : n_elements * d;
        u128 nbytes = n_elements >= kSaturated ? kSaturated : n_elements / g.block * g.block_bytes;
        if (t.offset != expected)
            c.fail("tensor " + quoted + " starts at data offset " + decimal(t.offset) +
                   "; GGUF packs tensors in order, so it must start at " + decimal(expected));
        if (data_start + t.offset + nbytes > size)
            c.fail("tensor " + quoted + " (" + decimal(nbytes) + " bytes at data offset " + decimal(t.offset) +
                   ") runs past the end of the file (" + decimal(size) + " bytes): the file is truncated");
        expected = pad(u128(t.offset) + nbytes, alignment);
    }
    check_vocabulary(c, metadata);
}

void check_gguf_file(const std::string &path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0) {
        std::string why = std::strerror(errno);
        if (fd >= 0) ::close(fd);
        fail(MMEDGE_ERR_IO, path + ": cannot read the GGUF file (" + why + ")");
    }
    uint64_t size = static_cast<uint64_t>(st.st_size);
    if (size < 24) {
        ::close(fd);
        check_gguf_bytes(nullptr, size, path);  // refuses with the header-size message
    }
    void *map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (map == MAP_FAILED) fail(MMEDGE_ERR_IO, path + ": cannot map the GGUF file (" + std::string(std::strerror(errno)) + ")");
    try {
        check_gguf_bytes(static_cast<const unsigned char *>(map), size, path);
    } catch (...) {
        ::munmap(map, size);
        throw;
    }
    ::munmap(map, size);
}

}  // namespace mmedge
