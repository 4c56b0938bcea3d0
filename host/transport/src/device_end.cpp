#include "vsnd/transport/device_end.hpp"

namespace vsnd::transport {

LoopbackDeviceEnd::LoopbackDeviceEnd(LoopbackTransport& t, device::SoundDevice& dev) : t_(t), dev_(dev) {
    std::array<virtq::DeviceQueue*, wire::kQueueCount> qs{};
    for (unsigned q = 0; q < wire::kQueueCount; ++q) {
        queues_[q] = std::make_unique<virtq::DeviceQueue>(t.guest_memory(), t.device_queue_config(q));
        qs[q] = queues_[q].get();
    }
    dev_.attach(qs, [this](wire::QueueIndex q) { t_.call(static_cast<unsigned>(q)).signal(); });
}

LoopbackDeviceEnd::~LoopbackDeviceEnd() { dev_.reset(); }

bool LoopbackDeviceEnd::dispatch_kicks() {
    bool any = false;
    for (unsigned q = 0; q < wire::kQueueCount; ++q)
        if (t_.kick(q).consume()) {
            any = true;
            dev_.on_kick(static_cast<wire::QueueIndex>(q));
        }
    return any;
}

} // namespace vsnd::transport
