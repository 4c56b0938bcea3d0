// The device side of a split virtqueue: pops descriptor chains (direct and indirect) the driver
// made available, validates every index, address and length, and pushes used entries with the
// notification rules of VIRTIO_RING_F_EVENT_IDX or the NO_INTERRUPT flag.
#pragma once

#include "vsnd/expected.hpp"
#include "vsnd/virtq/chain.hpp"
#include "vsnd/virtq/guest_memory.hpp"
#include "vsnd/virtq/split_ring.hpp"

#include <algorithm>
#include <optional>
#include <vector>
#include <string_view>

namespace vsnd::virtq {

enum class ChainError {
    HeadOutOfRange,       // avail ring names a descriptor index >= queue size
    IndexOutOfRange,      // a next field points outside the table
    TooLong,              // more descriptors than the table holds: a loop
    AddressOutOfRange,    // buffer not inside guest memory
    ReadableAfterWritable,// spec: device-readable descriptors come first
    MisplacedIndirect,    // indirect only as the sole head descriptor, never inside a table
    IndirectNotNegotiated,
    IndirectWithNext,     // INDIRECT and NEXT together are forbidden
    BadIndirectLength,    // table length 0 or not a multiple of 16
    LengthOverflow,       // total chain length beyond 4 GiB
};
std::string_view describe(ChainError e);

// A malformed chain still consumes its avail slot; `head` lets the caller return it (used len 0)
// so the driver does not wait forever. head_valid is false when the slot named no descriptor.
struct ChainFault {
    ChainError error;
    std::uint16_t head;
    bool head_valid;
};

struct QueueConfig {
    std::uint16_t size = 0;
    RingAddresses rings;
    bool event_idx = false;
    bool indirect_desc = true; // VIRTIO_RING_F_INDIRECT_DESC negotiated
};

// The longest indirect table accepted (or the queue size, if larger): QEMU's VIRTQUEUE_MAX_SIZE.
inline constexpr std::uint32_t kMaxIndirectEntries = 1024;

class DeviceQueue {
public:
    // `next_avail` is where processing resumes (vhost-user SET_VRING_BASE); used idx is read
    // from the ring, so a reconnecting device continues where the previous one stopped.
    DeviceQueue(const GuestMemory& mem, QueueConfig cfg, std::uint16_t next_avail = 0);

    using PopResult = Expected<Chain, ChainFault>;
    // The next available chain, or nullopt if none (or the ring is broken, see broken()).
    std::optional<PopResult> pop();
    // Returns a chain to the driver with `written` bytes in its writable part. A head that is not
    // held (never popped, or already returned) is ignored.
    void push(std::uint16_t head, std::uint32_t written);
    // After one or more push() calls: whether the driver wants an interrupt now.
    bool should_notify();
    // Ask the driver to kick (or not) when it adds buffers. After enabling, re-check with
    // has_available(): a buffer may have arrived while kicks were off.
    void set_kicks_enabled(bool enabled);
    bool has_available() const;
    // With VIRTIO_RING_F_EVENT_IDX: whether the driver has taken every used entry up to `used`
    // (its used_event, written when it re-enables interrupts after reaping, lies in [used, now]),
    // the one sign a device has that a notification arrived. nullopt without event idx.
    std::optional<bool> driver_took(std::uint16_t used) const;
    std::uint16_t used_index() const { return used_idx_; }
    // The driver's avail index as it is in the ring now (not yet popped entries included).
    std::uint16_t avail_index() const;

    // The driver broke the ring's rules (the avail index jumped by more than the queue size, or a
    // head the device holds was made available again): the queue is stopped for good.
    bool broken() const { return broken_; }
    const char* broken_reason() const { return broken_reason_; }
    // Chains popped and not yet pushed back: never more than size().
    std::uint16_t in_flight() const { return in_flight_; }
    std::uint16_t next_avail() const { return next_avail_; }
    std::uint16_t size() const { return cfg_.size; }
    const QueueConfig& config() const { return cfg_; }

private:
    Expected<Chain, ChainError> walk(std::uint16_t head);
    std::nullopt_t stop(const char* why);
    std::uint32_t max_indirect() const { return std::max<std::uint32_t>(cfg_.size, kMaxIndirectEntries); }

    const GuestMemory& mem_;
    QueueConfig cfg_;
    std::uint16_t next_avail_;
    std::uint16_t used_idx_;
    std::uint16_t signalled_used_;
    bool signalled_valid_ = false;
    bool broken_ = false;
    const char* broken_reason_ = "";
    bool kicks_enabled_ = true;
    std::vector<bool> in_use_;   // heads the device holds
    std::uint16_t in_flight_ = 0;
};

} // namespace vsnd::virtq
