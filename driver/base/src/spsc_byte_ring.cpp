#include "vsnd/spsc_byte_ring.hpp"

#include <algorithm>
#include <cstring>

namespace vsnd {

SpscByteRing::SpscByteRing(std::size_t capacity) : buf_(new std::uint8_t[capacity ? capacity : 1]()), cap_(capacity) {}

std::span<std::uint8_t> SpscByteRing::write_region(std::uint64_t pos, std::size_t max) {
    const std::size_t at = static_cast<std::size_t>(pos % cap_);
    return {buf_.get() + at, std::min(max, cap_ - at)};
}

std::span<const std::uint8_t> SpscByteRing::read_region(std::uint64_t pos, std::size_t max) const {
    const std::size_t at = static_cast<std::size_t>(pos % cap_);
    return {buf_.get() + at, std::min(max, cap_ - at)};
}

void SpscByteRing::push(std::span<const std::uint8_t> bytes) {
    std::uint64_t pos = tail();
    while (!bytes.empty()) {
        auto r = write_region(pos, bytes.size());
        std::memcpy(r.data(), bytes.data(), r.size());
        bytes = bytes.subspan(r.size());
        pos += r.size();
    }
    commit_write(pos);
}

void SpscByteRing::pop(std::span<std::uint8_t> out) {
    std::uint64_t pos = head();
    while (!out.empty()) {
        auto r = read_region(pos, out.size());
        std::memcpy(out.data(), r.data(), r.size());
        out = out.subspan(r.size());
        pos += r.size();
    }
    commit_read(pos);
}

} // namespace vsnd
