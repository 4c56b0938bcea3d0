// Guest memory as the device sees it: regions mapping guest-physical addresses to host memory.
// Every access is bounds-checked; an address or length the guest controls never reaches a raw
// pointer unchecked.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace vsnd::virtq {

struct MemoryRegion {
    std::uint64_t guest_addr = 0; // guest-physical start
    std::uint64_t size = 0;
    std::uint8_t* host = nullptr; // where the region is mapped here
    std::uint64_t user_addr = 0;  // the front-end's own virtual address (vhost-user ring addresses)
};

class GuestMemory {
public:
    // Fails (returns false) for an empty, wrapping or overlapping region.
    bool add(const MemoryRegion& region);
    void clear() { regions_.clear(); }
    const std::vector<MemoryRegion>& regions() const { return regions_; }

    // Host view of [gpa, gpa + len) if it lies entirely inside one region. len 0 is valid.
    std::optional<std::span<std::uint8_t>> span(std::uint64_t gpa, std::uint64_t len) const;
    // The same for a front-end virtual address (vhost-user gives ring addresses that way).
    std::optional<std::span<std::uint8_t>> user_span(std::uint64_t uaddr, std::uint64_t len) const;

private:
    std::vector<MemoryRegion> regions_;
};

} // namespace vsnd::virtq
