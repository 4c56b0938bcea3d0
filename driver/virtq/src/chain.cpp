#include "vsnd/virtq/chain.hpp"

#include <algorithm>
#include <cstring>

namespace vsnd::virtq {

std::size_t ChainReader::read(std::span<std::uint8_t> out) {
    std::size_t at = 0;
    return visit(out.size(), [&](std::span<const std::uint8_t> piece) {
        std::memcpy(out.data() + at, piece.data(), piece.size());
        at += piece.size();
    });
}

std::size_t ChainReader::skip(std::size_t n) {
    return visit(n, [](std::span<const std::uint8_t>) {});
}

std::size_t ChainWriter::write_at(std::size_t at, std::span<const std::uint8_t> bytes) {
    std::size_t from = 0;
    return visit_at(at, bytes.size(), [&](std::span<std::uint8_t> piece) {
        std::memcpy(piece.data(), bytes.data() + from, piece.size());
        from += piece.size();
    });
}

} // namespace vsnd::virtq
