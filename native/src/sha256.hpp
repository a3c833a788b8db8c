// SHA-256 (FIPS 180-4) of a file, streamed: the bundle's integrity check.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mmedge {

class Sha256 {
public:
    Sha256();
    void update(const uint8_t *data, size_t n);
    std::string hex_digest();  // finishes the hash; lowercase hex, as the manifest writes it

private:
    void block(const uint8_t *p);
    uint32_t h_[8];
    uint8_t buf_[64];
    size_t buffered_ = 0;
    uint64_t length_ = 0;
};

// Throws Error(MMEDGE_ERR_IO) when the file cannot be read.
std::string sha256_file(const std::string &path);

}  // namespace mmedge
