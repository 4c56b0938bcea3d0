// The simulated world around any backend: device, shared-memory transport and driver on one
// simulated clock (SimRig, with any backend in place of its simulated card).
#pragma once

#include "vsnd/device/sound_device.hpp"
#include "vsnd/driver/sound_driver.hpp"
#include "vsnd/transport/simulated_link.hpp"

namespace vsnd::test {

struct BackendRig {
    BackendRig(SimulatedClock& clock, device::AudioBackend& backend, device::Topology topology,
               transport::LoopbackLayout layout = {})
        : clock(clock), t(layout), dev(std::move(topology), backend, clock),
          link((t.publish_config(dev.config(), 0), t), dev, clock), drv(link, clock) {}
    // 250 µs more of the device's time, then what the driver got: answers, expired requests.
    void step() {
        link.run_until(clock.now() + 250'000);
        drv.on_interrupt();
        drv.expire(clock.now());
    }
    SimulatedClock& clock;
    transport::LoopbackTransport t;
    device::SoundDevice dev;
    transport::SimulatedLink link;
    driver::SoundDriver drv;
};

} // namespace vsnd::test
