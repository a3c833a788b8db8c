// A strict JSON reader, enough for manifest.json: RFC 8259 values, UTF-8 text, \u escapes with
// surrogate pairs, a nesting limit. Numbers keep their text's integer value when they have one.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mmedge::json {

enum class Kind { Null, Bool, Number, String, Array, Object };

struct Value {
    Kind kind = Kind::Null;
    bool boolean = false;
    double number = 0.0;
    bool is_integer = false;  // the text was an integer that fits int64
    int64_t integer = 0;
    std::string string;
    std::vector<Value> array;
    std::map<std::string, Value> object;  // a duplicate key is a parse error

    const Value *find(const std::string &key) const;
};

// Throws mmedge::Error(MMEDGE_ERR_MANIFEST) naming `what`, the byte offset and what was expected.
Value parse(const std::string &text, const std::string &what, int max_depth = 64);

const char *kind_name(Kind kind);

}  // namespace mmedge::json
