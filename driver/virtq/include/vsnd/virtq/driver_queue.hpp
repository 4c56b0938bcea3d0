// The driver side of a split virtqueue: adds chains of guest buffers (directly, or through a
// per-slot indirect table), kicks by the device's rules, reaps used entries. It trusts nothing the
// device writes: used ids and lengths are checked against its own records.
#pragma once

#include "vsnd/expected.hpp"
#include "vsnd/virtq/split_ring.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace vsnd::virtq {

struct DriverBuffer {
    std::uint64_t gpa;
    std::uint32_t len;
    bool device_writable;
};

// Guest memory the driver reserves for indirect tables: `slots` tables of `entries` descriptors
// each, one per possible head, so adding never allocates.
struct IndirectArea {
    std::uint64_t gpa = 0;
    std::uint8_t* host = nullptr;
    std::uint16_t entries = 0;
};
constexpr std::size_t indirect_area_bytes(std::uint16_t queue_size, std::uint16_t entries) {
    return std::size_t{16} * queue_size * entries;
}

struct Used {
    std::uint64_t token;
    std::uint32_t len;          // clamped to the chain's writable size
    bool len_overran = false;   // the device claimed more than it could have written
};

// A used entry that names no chain in flight: the device is broken, the entry is skipped.
enum class UsedError { IdOutOfRange, IdNotInFlight };

class DriverQueue {
public:
    // Initialises the ring memory (flags, indices). With an indirect area, chains of more than
    // one buffer use an indirect table (one ring descriptor per message).
    DriverQueue(RingAddresses rings, std::uint16_t size, bool event_idx,
                std::optional<IndirectArea> indirect = std::nullopt);

    // Adds a chain: device-readable buffers must come before device-writable ones. Returns false
    // if there is no room (the caller waits for used entries). The token comes back from reap().
    bool add(std::span<const DriverBuffer> buffers, std::uint64_t token);
    // Publishes added chains; returns whether the device asked to be kicked.
    bool publish();
    // Next used entry, if any.
    std::optional<Expected<Used, UsedError>> reap();
    // Interrupt suppression: ask for a call on the next used entry, or for none.
    void set_interrupts_enabled(bool enabled);
    bool has_used() const;

    std::uint16_t free_descriptors() const { return free_count_; }
    std::uint16_t in_flight() const { return in_flight_; }
    std::uint16_t size() const { return size_; }

private:
    RingAddresses rings_;
    std::uint16_t size_;
    bool event_idx_;
    std::optional<IndirectArea> indirect_;
    std::vector<std::uint16_t> next_free_;      // driver-private free list
    struct Slot { std::uint64_t token; std::uint16_t descriptors; std::uint32_t writable_bytes; bool busy; };
    std::vector<Slot> slots_;
    std::uint16_t free_head_ = 0, free_count_;
    bool interrupts_enabled_ = true;
    std::uint16_t avail_idx_ = 0, published_idx_ = 0, last_used_ = 0, in_flight_ = 0;
};

} // namespace vsnd::virtq
