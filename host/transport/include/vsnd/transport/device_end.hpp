// The device's end of a loopback transport: its view of the four queues, attached to a
// SoundDevice whose interrupts become call-eventfd signals.
#pragma once

#include "vsnd/device/sound_device.hpp"
#include "vsnd/transport/loopback.hpp"

namespace vsnd::transport {

class LoopbackDeviceEnd {
public:
    // The driver must have initialised the rings (constructed its LoopbackDriverEnd) first.
    LoopbackDeviceEnd(LoopbackTransport& t, device::SoundDevice& dev);
    ~LoopbackDeviceEnd();
    // Handles the kicks that arrived; returns whether there were any.
    bool dispatch_kicks();
    device::SoundDevice& device() { return dev_; }
    virtq::DeviceQueue& queue(unsigned q) { return *queues_[q]; }
    int kick_fd(unsigned q) const { return t_.kick(q).fd(); }

private:
    LoopbackTransport& t_;
    device::SoundDevice& dev_;
    std::array<std::unique_ptr<virtq::DeviceQueue>, wire::kQueueCount> queues_;
};

} // namespace vsnd::transport
