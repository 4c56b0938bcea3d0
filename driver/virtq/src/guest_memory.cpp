#include "vsnd/virtq/guest_memory.hpp"

namespace vsnd::virtq {
namespace {

// [a, a + len) inside [base, base + size), without overflow.
bool contains(std::uint64_t base, std::uint64_t size, std::uint64_t a, std::uint64_t len) {
    return a >= base && a - base <= size && len <= size - (a - base);
}

} // namespace

bool GuestMemory::add(const MemoryRegion& r) {
    if (r.size == 0 || r.host == nullptr || r.guest_addr + r.size < r.guest_addr ||
        r.user_addr + r.size < r.user_addr)
        return false;
    for (const auto& o : regions_)
        if (r.guest_addr < o.guest_addr + o.size && o.guest_addr < r.guest_addr + r.size) return false;
    regions_.push_back(r);
    return true;
}

std::optional<std::span<std::uint8_t>> GuestMemory::span(std::uint64_t gpa, std::uint64_t len) const {
    for (const auto& r : regions_)
        if (contains(r.guest_addr, r.size, gpa, len))
            return std::span<std::uint8_t>(r.host + (gpa - r.guest_addr), len);
    return std::nullopt;
}

std::optional<std::span<std::uint8_t>> GuestMemory::user_span(std::uint64_t ua, std::uint64_t len) const {
    for (const auto& r : regions_)
        if (contains(r.user_addr, r.size, ua, len))
            return std::span<std::uint8_t>(r.host + (ua - r.user_addr), len);
    return std::nullopt;
}

} // namespace vsnd::virtq
