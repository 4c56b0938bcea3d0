// A descriptor chain the device popped: its device-readable and device-writable parts, already
// translated and bounds-checked, exposed as byte streams (a payload split over many descriptors
// is normal: Linux gives one descriptor per physically contiguous piece).
#pragma once

#include <boost/container/small_vector.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

namespace vsnd::virtq {

struct Chain {
    std::uint16_t head = 0;
    boost::container::small_vector<std::span<const std::uint8_t>, 6> readable;
    boost::container::small_vector<std::span<std::uint8_t>, 6> writable;
    std::size_t readable_bytes = 0;
    std::size_t writable_bytes = 0;
};

// Sequential reader over a chain's readable part.
class ChainReader {
public:
    explicit ChainReader(const Chain& c)
        : parts_(c.readable.data(), c.readable.size()), remaining_(c.readable_bytes) {}
    std::size_t remaining() const { return remaining_; }
    // Copies min(out.size(), remaining()) bytes; returns how many.
    std::size_t read(std::span<std::uint8_t> out);
    std::size_t skip(std::size_t n);
    // Calls fn(span) for the next up to n bytes, piece by piece, without copying.
    template <class Fn> std::size_t visit(std::size_t n, Fn&& fn);

private:
    std::span<const std::span<const std::uint8_t>> parts_;
    std::size_t part_ = 0, offset_ = 0, remaining_;
};

// Writer over a chain's writable part, from its start or at an absolute offset.
class ChainWriter {
public:
    explicit ChainWriter(const Chain& c)
        : parts_(c.writable.data(), c.writable.size()), capacity_(c.writable_bytes) {}
    std::size_t capacity() const { return capacity_; }
    // Writes bytes at absolute offset `at` of the writable area; returns bytes written.
    std::size_t write_at(std::size_t at, std::span<const std::uint8_t> bytes);
    // Calls fn(span) over the writable area [at, at + n), piece by piece.
    template <class Fn> std::size_t visit_at(std::size_t at, std::size_t n, Fn&& fn);

private:
    std::span<const std::span<std::uint8_t>> parts_;
    std::size_t capacity_;
};

template <class Fn>
std::size_t ChainReader::visit(std::size_t n, Fn&& fn) {
    std::size_t done = 0;
    while (done < n && part_ < parts_.size()) {
        auto piece = parts_[part_].subspan(offset_);
        std::size_t take = std::min(piece.size(), n - done);
        if (take) fn(piece.first(take));
        done += take;
        offset_ += take;
        if (offset_ == parts_[part_].size()) { ++part_; offset_ = 0; }
    }
    remaining_ -= done;
    return done;
}

template <class Fn>
std::size_t ChainWriter::visit_at(std::size_t at, std::size_t n, Fn&& fn) {
    std::size_t done = 0;
    for (auto part : parts_) {
        if (done == n) break;
        if (at >= part.size()) { at -= part.size(); continue; }
        std::size_t take = std::min(part.size() - at, n - done);
        fn(part.subspan(at, take));
        done += take;
        at = 0;
    }
    return done;
}

} // namespace vsnd::virtq
