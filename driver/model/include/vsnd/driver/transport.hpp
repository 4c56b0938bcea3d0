// What the guest driver model needs from a virtio transport: the device's config space, four
// split virtqueues, doorbells, guest memory for its buffers, and a way to wait for interrupts.
// Implemented by the shared-memory loopback (host/transport) and, later, the vhost-user front-end.
#pragma once

#include "vsnd/timing/clock.hpp"
#include "vsnd/virtq/driver_queue.hpp"

#include <cstdint>
#include <optional>
#include <span>

namespace vsnd::driver {

// Guest memory the driver owns: its guest-physical address and where it is mapped here.
struct DmaBuffer {
    std::uint64_t gpa = 0;
    std::uint8_t* host = nullptr;
    std::size_t size = 0;
};

class DriverTransport {
public:
    virtual ~DriverTransport() = default;
    virtual std::span<const std::uint8_t> config() = 0;
    virtual std::uint64_t device_features() = 0;
    virtual virtq::DriverQueue& queue(unsigned index) = 0;
    virtual void kick(unsigned index) = 0;
    // Guest memory for buffers; nullopt when exhausted.
    virtual std::optional<DmaBuffer> allocate(std::size_t bytes, std::size_t align = 64) = 0;
    // Gives back a buffer allocate() returned, once the device no longer holds it.
    virtual void release(const DmaBuffer& buffer) = 0;
    // Blocks until the device signals an interrupt or `timeout` passes (on the transport's
    // clock); true if an interrupt came. A simulated transport runs the device meanwhile.
    virtual bool wait_interrupt(Nanos timeout) = 0;
    // For an event loop: a fd that is readable while an interrupt is pending, or -1 when the
    // transport has none (a simulated one runs the device only inside wait_interrupt). When it is
    // readable, call clear_interrupt() and then SoundDriver::process_interrupts().
    virtual int interrupt_fd() { return -1; }
    virtual void clear_interrupt() {}
    // True once the device can never answer again (a vhost-user back-end that closed its
    // connection): the driver then fails what is pending at once instead of waiting it out.
    virtual bool device_gone() const { return false; }
};

} // namespace vsnd::driver
