// Layout of a split virtqueue (virtio 1.2 §2.7) and the notification arithmetic both sides share.
#pragma once

#include <cstddef>
#include <cstdint>

namespace vsnd::virtq {

inline constexpr std::uint16_t kMaxQueueSize = 32768;

// Flag values of <linux/virtio_ring.h>. That header's inline helpers are not valid C++, so the
// values are restated here and checked against it in ring_abi_check.c.
inline constexpr std::uint16_t VRING_DESC_F_NEXT = 1;
inline constexpr std::uint16_t VRING_DESC_F_WRITE = 2;
inline constexpr std::uint16_t VRING_DESC_F_INDIRECT = 4;
inline constexpr std::uint16_t VRING_USED_F_NO_NOTIFY = 1;
inline constexpr std::uint16_t VRING_AVAIL_F_NO_INTERRUPT = 1;

// Host pointers to the three parts of one ring. The owner guarantees each part is mapped for
// its full size (see ring_bytes()).
struct RingAddresses {
    std::uint8_t* desc = nullptr;
    std::uint8_t* avail = nullptr;
    std::uint8_t* used = nullptr;
};

struct RingSizes {
    std::size_t desc, avail, used;
};

// Sizes include the event-index trailer words, which are always reserved.
constexpr RingSizes ring_bytes(std::uint16_t queue_size) {
    return {16u * queue_size, 6u + 2u * queue_size, 6u + 8u * queue_size};
}

constexpr bool valid_queue_size(std::uint32_t n) { return n > 0 && n <= kMaxQueueSize && (n & (n - 1)) == 0; }

// Why a ring's three parts cannot be used, or nullptr: each part aligned as the spec requires
// (descriptors 16, avail 2, used 4 bytes: also what the 16/32-bit atomic accesses need), and no two
// parts overlapping (a used ring over the avail ring would move the avail index with every
// completion). Memory mapped twice under two addresses is not caught here; the device's per-pass
// bound covers it.
const char* ring_layout_error(const RingAddresses& r, std::uint16_t queue_size);
// Which part of ring `other` the used ring of `writer` overlaps ("descriptor table", "available
// ring", "used ring"), or nullptr: the device writes a used ring, so over another queue's ring it
// would rewrite that queue's indices and descriptors. Rings of two queues must be disjoint.
const char* used_ring_overlap(const RingAddresses& writer, std::uint16_t writer_size, const RingAddresses& other,
                              std::uint16_t other_size);

// True when a notification is due: event_idx lies in [old_idx, new_idx) modulo 2^16.
constexpr bool need_event(std::uint16_t event_idx, std::uint16_t new_idx, std::uint16_t old_idx) {
    return static_cast<std::uint16_t>(new_idx - event_idx - 1) < static_cast<std::uint16_t>(new_idx - old_idx);
}

} // namespace vsnd::virtq
