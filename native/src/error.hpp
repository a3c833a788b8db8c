// The one exception type inside the native runtime; the C ABI (mmedge.cpp) turns it into a status
// code and mmedge_last_error() text. Nothing else is thrown on purpose.
#pragma once

#include <stdexcept>
#include <string>

#include "mmedge.h"

namespace mmedge {

class Error : public std::runtime_error {
public:
    Error(mmedge_status status, const std::string &message) : std::runtime_error(message), status_(status) {}
    mmedge_status status() const { return status_; }

private:
    mmedge_status status_;
};

[[noreturn]] inline void fail(mmedge_status status, const std::string &message) { throw Error(status, message); }

}  // namespace mmedge
