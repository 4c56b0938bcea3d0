// Where a driver puts things in the guest memory it owns: a header page (config space, for a
// transport that needs one), per queue the three parts of its split ring (64-byte aligned) and one
// indirect table per ring slot, then a DMA area for buffers handed out by a bump allocator.
// Shared by the loopback transport and the vhost-user front-end.
#pragma once

#include "vsnd/driver/transport.hpp"
#include "vsnd/virtq/driver_queue.hpp"
#include "vsnd/virtq/split_ring.hpp"

#include <cstdint>
#include <iterator>
#include <map>
#include <optional>
#include <vector>

namespace vsnd::driver {

// Offsets from the start of the region.
struct QueuePlacement {
    std::uint64_t desc, avail, used, indirect;
};

class GuestLayout {
public:
    static constexpr std::size_t kHeaderBytes = 4096;

    GuestLayout(std::uint16_t queue_size, std::uint16_t indirect_entries, std::size_t dma_bytes, unsigned queues = 4)
        : queue_size_(queue_size), indirect_entries_(indirect_entries) {
        const auto r = virtq::ring_bytes(queue_size);
        std::uint64_t at = kHeaderBytes;
        for (unsigned q = 0; q < queues; ++q) {
            QueuePlacement p;
            p.desc = at;
            p.avail = p.desc + align_up(r.desc, 64);
            p.used = p.avail + align_up(r.avail, 64);
            p.indirect = p.used + align_up(r.used, 64);
            at = p.indirect + virtq::indirect_area_bytes(queue_size, indirect_entries);
            queues_.push_back(p);
        }
        dma_offset_ = align_up(at, 4096);
        total_ = dma_offset_ + align_up(dma_bytes, 4096);
    }

    std::size_t total_bytes() const { return total_; }
    std::uint64_t dma_offset() const { return dma_offset_; }
    const QueuePlacement& queue(unsigned q) const { return queues_.at(q); }
    std::uint16_t queue_size() const { return queue_size_; }
    std::uint16_t indirect_entries() const { return indirect_entries_; }

    static constexpr std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

private:
    std::uint16_t queue_size_, indirect_entries_;
    std::vector<QueuePlacement> queues_;
    std::uint64_t dma_offset_ = 0;
    std::size_t total_ = 0;
};

// Hands out pieces of [begin, end) of a region mapped at `host` with guest-physical start `gpa`,
// first fit, and takes them back (neighbouring free pieces merge), so renegotiated rings reuse
// memory instead of leaking it. Used from the driver's one thread.
class DmaAllocator {
public:
    DmaAllocator() = default;
    DmaAllocator(std::uint64_t gpa, std::uint8_t* host, std::uint64_t begin, std::uint64_t end)
        : gpa_(gpa), host_(host) {
        if (end > begin) free_[begin] = end - begin;
    }
    std::optional<DmaBuffer> allocate(std::size_t bytes, std::size_t align) {
        if (bytes == 0) bytes = 1;
        const std::uint64_t a = align ? align : 1;
        for (auto it = free_.begin(); it != free_.end(); ++it) {
            const std::uint64_t start = it->first, size = it->second;
            // Aligned in guest-physical terms (what a device or IOMMU sees), not just as an offset.
            const std::uint64_t at = GuestLayout::align_up(gpa_ + start, a) - gpa_;
            if (at - start >= size || bytes > size - (at - start)) continue;
            const std::uint64_t tail = start + size - (at + bytes);
            free_.erase(it);
            if (at > start) free_[start] = at - start;
            if (tail) free_[at + bytes] = tail;
            used_[at] = bytes;
            return DmaBuffer{gpa_ + at, host_ + at, bytes};
        }
        return std::nullopt;
    }
    // A buffer allocate() returned; anything else is ignored.
    void release(const DmaBuffer& b) {
        if (b.gpa < gpa_) return;
        const std::uint64_t at = b.gpa - gpa_;
        auto u = used_.find(at);
        if (u == used_.end()) return;
        std::uint64_t start = at, size = u->second;
        used_.erase(u);
        auto next = free_.lower_bound(start);
        if (next != free_.end() && next->first == start + size) {
            size += next->second;
            next = free_.erase(next);
        }
        if (next != free_.begin()) {
            auto prev = std::prev(next);
            if (prev->first + prev->second == start) {
                start = prev->first;
                size += prev->second;
                free_.erase(prev);
            }
        }
        free_[start] = size;
    }
    std::size_t free_bytes() const {
        std::size_t n = 0;
        for (const auto& [at, size] : free_) n += size;
        return n;
    }

private:
    std::uint64_t gpa_ = 0;
    std::uint8_t* host_ = nullptr;
    std::map<std::uint64_t, std::uint64_t> free_, used_; // offset -> size
};

} // namespace vsnd::driver
