#include "vsnd/virtq/device_queue.hpp"
#include "vsnd/virtq/ring_access.hpp"

#include <limits>

namespace vsnd::virtq {

using namespace detail;

std::string_view describe(ChainError e) {
    switch (e) {
    case ChainError::HeadOutOfRange: return "available ring names a descriptor beyond the table";
    case ChainError::IndexOutOfRange: return "descriptor 'next' beyond the table";
    case ChainError::TooLong: return "descriptor chain longer than its table (loop)";
    case ChainError::AddressOutOfRange: return "buffer outside guest memory";
    case ChainError::ReadableAfterWritable: return "device-readable descriptor after a writable one";
    case ChainError::MisplacedIndirect: return "indirect descriptor inside a chain or table";
    case ChainError::IndirectNotNegotiated: return "indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC";
    case ChainError::IndirectWithNext: return "indirect descriptor with NEXT set";
    case ChainError::BadIndirectLength: return "indirect table length is 0, unaligned or too long";
    case ChainError::LengthOverflow: return "chain longer than 4 GiB";
    }
    return "?";
}

const char* ring_layout_error(const RingAddresses& r, std::uint16_t queue_size) {
    const auto a = reinterpret_cast<std::uintptr_t>(r.desc), b = reinterpret_cast<std::uintptr_t>(r.avail),
               c = reinterpret_cast<std::uintptr_t>(r.used);
    if (a % 16) return "descriptor table not 16-byte aligned";
    if (b % 2) return "available ring not 2-byte aligned";
    if (c % 4) return "used ring not 4-byte aligned";
    const RingSizes n = ring_bytes(queue_size);
    auto overlap = [](std::uintptr_t x, std::size_t xn, std::uintptr_t y, std::size_t yn) { return x < y + yn && y < x + xn; };
    if (overlap(a, n.desc, b, n.avail)) return "descriptor table overlaps the available ring";
    if (overlap(a, n.desc, c, n.used)) return "descriptor table overlaps the used ring";
    if (overlap(b, n.avail, c, n.used)) return "available ring overlaps the used ring";
    return nullptr;
}

const char* used_ring_overlap(const RingAddresses& writer, std::uint16_t writer_size, const RingAddresses& other,
                              std::uint16_t other_size) {
    const auto w = reinterpret_cast<std::uintptr_t>(writer.used);
    const std::size_t wn = ring_bytes(writer_size).used;
    const RingSizes n = ring_bytes(other_size);
    auto overlaps = [&](const std::uint8_t* p, std::size_t len) {
        const auto x = reinterpret_cast<std::uintptr_t>(p);
        return w < x + len && x < w + wn;
    };
    if (overlaps(other.desc, n.desc)) return "descriptor table";
    if (overlaps(other.avail, n.avail)) return "available ring";
    if (overlaps(other.used, n.used)) return "used ring";
    return nullptr;
}

DeviceQueue::DeviceQueue(const GuestMemory& mem, QueueConfig cfg, std::uint16_t next_avail)
    : mem_(mem), cfg_(cfg), next_avail_(next_avail),
      used_idx_(load_acquire16(cfg.rings.used + kIdx)), signalled_used_(used_idx_), in_use_(cfg.size, false) {}

bool DeviceQueue::has_available() const {
    return !broken_ && load_acquire16(cfg_.rings.avail + kIdx) != next_avail_;
}

std::optional<DeviceQueue::PopResult> DeviceQueue::pop() {
    if (broken_) return std::nullopt;
    std::uint16_t avail_idx = load_acquire16(cfg_.rings.avail + kIdx);
    if (avail_idx == next_avail_ && cfg_.event_idx && kicks_enabled_) {
        // Ask for a kick at the next buffer, then look again. Without the full fence the index
        // load could pass the avail_event store: the driver would skip its kick while we go idle.
        store_release16(cfg_.rings.used + used_avail_event(cfg_.size), next_avail_);
        full_fence();
        avail_idx = load_acquire16(cfg_.rings.avail + kIdx);
    }
    const std::uint16_t pending = avail_idx - next_avail_;
    if (pending == 0) return std::nullopt;
    if (pending > cfg_.size) return stop("available index moved by more than the queue size");

    const std::uint16_t head = load16(cfg_.rings.avail + avail_entry(next_avail_ % cfg_.size));
    if (head < cfg_.size) {
        // The spec: a driver makes a buffer available only while the device does not hold it.
        // (QEMU: "Virtqueue size exceeded".) Without this, one head republished forever would
        // pile up messages without bound.
        if (in_use_[head]) return stop("a descriptor chain made available again while the device holds it");
        in_use_[head] = true;
        ++in_flight_;
    }
    ++next_avail_;
    if (cfg_.event_idx && kicks_enabled_) store_release16(cfg_.rings.used + used_avail_event(cfg_.size), next_avail_);

    auto chain = walk(head);
    if (!chain) return PopResult(Unexpected{ChainFault{chain.error(), head, head < cfg_.size}});
    return PopResult(std::move(chain).value());
}

Expected<Chain, ChainError> DeviceQueue::walk(std::uint16_t head) {
    if (head >= cfg_.size) return Unexpected{ChainError::HeadOutOfRange};
    Chain c;
    c.head = head;
    const std::uint8_t* table = cfg_.rings.desc;
    std::uint32_t table_size = cfg_.size;
    std::uint32_t idx = head, seen = 0;
    bool in_indirect = false;
    std::uint64_t total = 0;

    for (;;) {
        if (idx >= table_size) return Unexpected{ChainError::IndexOutOfRange};
        if (++seen > table_size) return Unexpected{ChainError::TooLong};
        // Each field is read once: the guest may rewrite the table while we look at it.
        const std::uint8_t* d = table + 16u * idx;
        const std::uint64_t addr = load64(d);
        const std::uint32_t len = load32(d + 8);
        const std::uint16_t flags = load16(d + 12);
        const std::uint16_t next = load16(d + 14);

        if (flags & VRING_DESC_F_INDIRECT) {
            if (!cfg_.indirect_desc) return Unexpected{ChainError::IndirectNotNegotiated};
            if (in_indirect || seen != 1) return Unexpected{ChainError::MisplacedIndirect};
            if (flags & VRING_DESC_F_NEXT) return Unexpected{ChainError::IndirectWithNext};
            // The spec bounds a chain by the queue size, but Linux builds indirect tables as long
            // as its scatterlist (WARNs only without indirect), so the bound for a table is the
            // queue size or QEMU's VIRTQUEUE_MAX_SIZE, whichever is larger, never the 32768 a
            // 16-bit index allows.
            if (len == 0 || len % 16 || len / 16 > max_indirect()) return Unexpected{ChainError::BadIndirectLength};
            auto t = mem_.span(addr, len);
            if (!t) return Unexpected{ChainError::AddressOutOfRange};
            table = t->data();
            table_size = len / 16;
            idx = 0;
            seen = 0;
            in_indirect = true;
            continue;
        }

        auto buf = mem_.span(addr, len);
        if (!buf) return Unexpected{ChainError::AddressOutOfRange};
        total += len;
        if (total > std::numeric_limits<std::uint32_t>::max()) return Unexpected{ChainError::LengthOverflow};
        if (flags & VRING_DESC_F_WRITE) {
            c.writable.push_back(*buf);
            c.writable_bytes += len;
        } else {
            if (!c.writable.empty()) return Unexpected{ChainError::ReadableAfterWritable};
            c.readable.push_back(*buf);
            c.readable_bytes += len;
        }
        if (!(flags & VRING_DESC_F_NEXT)) break;
        idx = next;
    }
    return c;
}

std::nullopt_t DeviceQueue::stop(const char* why) {
    broken_ = true;
    broken_reason_ = why;
    return std::nullopt;
}

void DeviceQueue::push(std::uint16_t head, std::uint32_t written) {
    // Only what was popped and not yet returned: the used ring never holds more than the queue.
    if (head >= cfg_.size || !in_use_[head]) return;
    in_use_[head] = false;
    --in_flight_;
    std::uint8_t* e = cfg_.rings.used + used_entry(used_idx_ % cfg_.size);
    store32(e, head);
    store32(e + 4, written);
    ++used_idx_;
    store_release16(cfg_.rings.used + kIdx, used_idx_);
}

bool DeviceQueue::should_notify() {
    // The used index store must be visible before we read the driver's wish, or both sides
    // can miss each other (the driver re-enabling interrupts just as we decide).
    full_fence();
    if (!cfg_.event_idx)
        return !(load_acquire16(cfg_.rings.avail + kFlags) & VRING_AVAIL_F_NO_INTERRUPT);
    const std::uint16_t old = signalled_used_;
    const bool first = !signalled_valid_;
    signalled_used_ = used_idx_;
    signalled_valid_ = true;
    if (first) return true;
    const std::uint16_t used_event = load_acquire16(cfg_.rings.avail + avail_used_event(cfg_.size));
    return need_event(used_event, used_idx_, old);
}

std::uint16_t DeviceQueue::avail_index() const { return load_acquire16(cfg_.rings.avail + kIdx); }

std::optional<bool> DeviceQueue::driver_took(std::uint16_t used) const {
    if (!cfg_.event_idx) return std::nullopt;
    const std::uint16_t used_event = load_acquire16(cfg_.rings.avail + avail_used_event(cfg_.size));
    return static_cast<std::uint16_t>(used_event - used) <= static_cast<std::uint16_t>(used_idx_ - used);
}

void DeviceQueue::set_kicks_enabled(bool enabled) {
    kicks_enabled_ = enabled;
    if (cfg_.event_idx) {
        // With event idx there is no off switch; an avail_event behind next_avail asks for nothing.
        store_release16(cfg_.rings.used + used_avail_event(cfg_.size),
                        enabled ? next_avail_ : static_cast<std::uint16_t>(next_avail_ - 1));
    } else {
        store_release16(cfg_.rings.used + kFlags, enabled ? 0 : VRING_USED_F_NO_NOTIFY);
    }
    full_fence();
}

} // namespace vsnd::virtq
