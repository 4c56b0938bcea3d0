// A lock-free single-producer/single-consumer byte ring, the project's one ring for audio bytes:
// between the device loop and a backend's audio thread, or inside one thread (a paced card's
// FIFO). Positions are absolute byte counts since creation (they never wrap in practice: 2^64
// bytes); the storage index is position % capacity. The producer owns `tail`, the consumer owns
// `head`; each publishes with release and reads the other's with acquire, so bytes are visible
// before the position that covers them. Capacity is fixed at construction: no allocation after.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace vsnd {

class SpscByteRing {
public:
    explicit SpscByteRing(std::size_t capacity);
    std::size_t capacity() const { return cap_; }

    // Producer side.
    std::uint64_t tail() const { return tail_.load(std::memory_order_relaxed); }
    std::uint64_t head_acquire() const { return head_.load(std::memory_order_acquire); }
    std::size_t free_bytes() const { return cap_ - static_cast<std::size_t>(tail() - head_acquire()); }
    // Contiguous room at `pos` (= tail()), up to `max` bytes and the end of the storage.
    std::span<std::uint8_t> write_region(std::uint64_t pos, std::size_t max);
    void commit_write(std::uint64_t new_tail) { tail_.store(new_tail, std::memory_order_release); }
    // Copies all of `bytes` (the caller checked free_bytes()).
    void push(std::span<const std::uint8_t> bytes);

    // Consumer side.
    std::uint64_t head() const { return head_.load(std::memory_order_relaxed); }
    std::uint64_t tail_acquire() const { return tail_.load(std::memory_order_acquire); }
    std::size_t used_bytes() const { return static_cast<std::size_t>(tail_acquire() - head()); }
    // Contiguous bytes at `pos` (head() ≤ pos < tail), up to `max` bytes and the end of the storage.
    std::span<const std::uint8_t> read_region(std::uint64_t pos, std::size_t max) const;
    void commit_read(std::uint64_t new_head) { head_.store(new_head, std::memory_order_release); }
    // Copies out.size() bytes from head() and releases them (the caller checked used_bytes()).
    void pop(std::span<std::uint8_t> out);

private:
    std::unique_ptr<std::uint8_t[]> buf_;
    std::size_t cap_;
    alignas(64) std::atomic<std::uint64_t> head_{0};
    alignas(64) std::atomic<std::uint64_t> tail_{0};
};

} // namespace vsnd
