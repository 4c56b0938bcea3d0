// A virtio transport in one shared-memory region: a memfd holding the config space, four split
// virtqueues (with indirect tables) and the driver's buffers, plus eventfd doorbells for kicks
// and calls. The driver model and the device model talk only through these rings, in one process
// or across two (the memfd and eventfds survive fork()).
#pragma once

#include "vsnd/event_fd.hpp"
#include "vsnd/driver/guest_layout.hpp"
#include "vsnd/driver/transport.hpp"
#include "vsnd/virtq/device_queue.hpp"
#include "vsnd/virtq/driver_queue.hpp"
#include "vsnd/virtq/guest_memory.hpp"
#include "vsnd/wire/virtio_snd.hpp"

#include <array>
#include <memory>
#include <optional>
#include <span>

namespace vsnd::transport {

class SharedMemory {
public:
    explicit SharedMemory(std::size_t bytes); // throws std::system_error
    ~SharedMemory();
    SharedMemory(const SharedMemory&) = delete;
    SharedMemory& operator=(const SharedMemory&) = delete;
    int fd() const { return fd_; }
    std::uint8_t* data() const { return data_; }
    std::size_t size() const { return size_; }

private:
    int fd_;
    std::uint8_t* data_;
    std::size_t size_;
};

struct LoopbackLayout {
    std::uint16_t queue_size = 64;
    std::uint16_t indirect_entries = 32; // 0: no indirect descriptors
    bool event_idx = true;
    std::size_t dma_bytes = 16u << 20;
};

class LoopbackTransport {
public:
    static constexpr std::uint64_t kGuestBase = 0x10'0000; // guest-physical start of the region

    explicit LoopbackTransport(LoopbackLayout layout = {});
    const LoopbackLayout& layout() const { return layout_; }
    const virtq::GuestMemory& guest_memory() const { return memory_; }
    SharedMemory& shared_memory() { return shm_; }

    // Device side.
    void publish_config(const wire::Config& config, std::uint64_t device_features);
    // The device's view of queue q, built from guest-physical ring addresses (bounds-checked).
    virtq::QueueConfig device_queue_config(unsigned q) const;
    const EventFd& kick(unsigned q) const { return kicks_[q]; }
    const EventFd& call(unsigned q) const { return calls_[q]; }

    // Driver side: ring and indirect-table addresses it owns.
    virtq::RingAddresses driver_rings(unsigned q) const;
    virtq::IndirectArea indirect_area(unsigned q) const;
    std::span<const std::uint8_t> config_space() const;
    std::uint64_t device_features() const;
    std::uint64_t dma_base() const { return gpa(placement_.dma_offset()); }
    std::uint8_t* host(std::uint64_t gpa) const { return shm_.data() + (gpa - kGuestBase); }

private:
    std::uint64_t gpa(std::uint64_t offset) const { return kGuestBase + offset; }

    LoopbackLayout layout_;
    driver::GuestLayout placement_;
    SharedMemory shm_;
    virtq::GuestMemory memory_;
    std::array<EventFd, wire::kQueueCount> kicks_, calls_;
};

// The driver's end: DriverQueues over the rings, a bump allocator for its buffers, doorbells,
// and a blocking wait on the call eventfds. Works against a device in another thread or process.
class LoopbackDriverEnd : public driver::DriverTransport {
public:
    LoopbackDriverEnd(LoopbackTransport& t, const Clock& clock);
    std::span<const std::uint8_t> config() override { return t_.config_space(); }
    std::uint64_t device_features() override { return t_.device_features(); }
    virtq::DriverQueue& queue(unsigned q) override { return *queues_[q]; }
    void kick(unsigned q) override { t_.kick(q).signal(); }
    std::optional<driver::DmaBuffer> allocate(std::size_t bytes, std::size_t align) override;
    void release(const driver::DmaBuffer& b) override { dma_.release(b); }
    bool wait_interrupt(Nanos timeout) override;
    int interrupt_fd() override { return calls_.fd(); }
    void clear_interrupt() override { consume_calls(); }
    std::size_t dma_free_bytes() const { return dma_.free_bytes(); }

protected:
    bool consume_calls();
    LoopbackTransport& t_;
    const Clock& clock_;

private:
    std::array<std::unique_ptr<virtq::DriverQueue>, wire::kQueueCount> queues_;
    driver::DmaAllocator dma_;
    ReadableSet calls_; // the four call eventfds as one interrupt fd
};

} // namespace vsnd::transport
