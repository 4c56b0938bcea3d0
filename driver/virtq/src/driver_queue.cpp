#include "vsnd/virtq/driver_queue.hpp"
#include "vsnd/virtq/ring_access.hpp"

#include <cstring>

namespace vsnd::virtq {

using namespace detail;

DriverQueue::DriverQueue(RingAddresses rings, std::uint16_t size, bool event_idx,
                         std::optional<IndirectArea> indirect)
    : rings_(rings), size_(size), event_idx_(event_idx), indirect_(indirect),
      next_free_(size), slots_(size), free_count_(size) {
    const auto bytes = ring_bytes(size);
    std::memset(rings.desc, 0, bytes.desc);
    std::memset(rings.avail, 0, bytes.avail);
    std::memset(rings.used, 0, bytes.used);
    for (std::uint16_t i = 0; i < size; ++i) next_free_[i] = static_cast<std::uint16_t>(i + 1);
    full_fence();
}

bool DriverQueue::add(std::span<const DriverBuffer> bufs, std::uint64_t token) {
    const std::size_t n = bufs.size();
    if (n == 0 || n > kMaxQueueSize) return false;
    std::uint32_t writable = 0;
    for (std::size_t i = 0; i < n; ++i) {
        if (i && bufs[i - 1].device_writable && !bufs[i].device_writable) return false;
        if (bufs[i].device_writable) writable += bufs[i].len;
    }
    const bool use_indirect = indirect_ && n > 1 && n <= indirect_->entries;
    const std::uint16_t need = use_indirect ? 1 : static_cast<std::uint16_t>(n);
    if (free_count_ < need) return false;

    auto write_desc = [](std::uint8_t* d, std::uint64_t addr, std::uint32_t len, std::uint16_t flags,
                         std::uint16_t next) {
        store64(d, addr);
        store32(d + 8, len);
        store16(d + 12, flags);
        store16(d + 14, next);
    };
    auto flags_of = [&](std::size_t i) {
        return static_cast<std::uint16_t>((bufs[i].device_writable ? VRING_DESC_F_WRITE : 0) |
                                          (i + 1 < n ? VRING_DESC_F_NEXT : 0));
    };

    const std::uint16_t head = free_head_;
    if (use_indirect) {
        const std::size_t offset = std::size_t{16} * indirect_->entries * head;
        std::uint8_t* table = indirect_->host + offset;
        for (std::size_t i = 0; i < n; ++i)
            write_desc(table + 16 * i, bufs[i].gpa, bufs[i].len, flags_of(i), static_cast<std::uint16_t>(i + 1));
        write_desc(rings_.desc + 16u * head, indirect_->gpa + offset, static_cast<std::uint32_t>(16 * n),
                   VRING_DESC_F_INDIRECT, 0);
        free_head_ = next_free_[head];
    } else {
        std::uint16_t idx = head;
        for (std::size_t i = 0; i < n; ++i) {
            write_desc(rings_.desc + 16u * idx, bufs[i].gpa, bufs[i].len, flags_of(i), next_free_[idx]);
            idx = next_free_[idx];
        }
        free_head_ = idx;
    }
    free_count_ -= need;
    slots_[head] = {token, need, writable, true};
    store16(rings_.avail + avail_entry(avail_idx_ % size_), head);
    ++avail_idx_;
    ++in_flight_;
    return true;
}

bool DriverQueue::publish() {
    const std::uint16_t old = published_idx_;
    store_release16(rings_.avail + kIdx, avail_idx_);
    published_idx_ = avail_idx_;
    full_fence(); // the index must be visible before we read the device's wish
    if (old == avail_idx_) return false;
    if (event_idx_)
        return need_event(load_acquire16(rings_.used + used_avail_event(size_)), avail_idx_, old);
    return !(load_acquire16(rings_.used + kFlags) & VRING_USED_F_NO_NOTIFY);
}

bool DriverQueue::has_used() const { return load_acquire16(rings_.used + kIdx) != last_used_; }

std::optional<Expected<Used, UsedError>> DriverQueue::reap() {
    if (load_acquire16(rings_.used + kIdx) == last_used_) {
        if (!event_idx_ || !interrupts_enabled_) return std::nullopt;
        // Ask for an interrupt at the next entry, then look again (the same store-load race as
        // the device's kick request: without the fence both sides can wait for each other).
        store_release16(rings_.avail + avail_used_event(size_), last_used_);
        full_fence();
        if (load_acquire16(rings_.used + kIdx) == last_used_) return std::nullopt;
    }
    const std::uint8_t* e = rings_.used + used_entry(last_used_ % size_);
    const std::uint32_t id = load32(e);
    const std::uint32_t len = load32(e + 4);
    ++last_used_;
    if (event_idx_ && interrupts_enabled_) store_release16(rings_.avail + avail_used_event(size_), last_used_);
    if (id >= size_) return Expected<Used, UsedError>(Unexpected{UsedError::IdOutOfRange});
    Slot& slot = slots_[id];
    if (!slot.busy) return Expected<Used, UsedError>(Unexpected{UsedError::IdNotInFlight});

    // Free from the driver's private links: the device could have rewritten the table.
    std::uint16_t last = static_cast<std::uint16_t>(id);
    for (std::uint16_t i = 1; i < slot.descriptors; ++i) last = next_free_[last];
    next_free_[last] = free_head_;
    free_head_ = static_cast<std::uint16_t>(id);
    free_count_ += slot.descriptors;
    slot.busy = false;
    --in_flight_;
    if (len > slot.writable_bytes) return Expected<Used, UsedError>(Used{slot.token, slot.writable_bytes, true});
    return Expected<Used, UsedError>(Used{slot.token, len, false});
}

void DriverQueue::set_interrupts_enabled(bool enabled) {
    interrupts_enabled_ = enabled;
    if (event_idx_)
        store_release16(rings_.avail + avail_used_event(size_),
                        enabled ? last_used_ : static_cast<std::uint16_t>(last_used_ - 1));
    else
        store_release16(rings_.avail + kFlags, enabled ? 0 : VRING_AVAIL_F_NO_INTERRUPT);
    full_fence();
}

} // namespace vsnd::virtq
