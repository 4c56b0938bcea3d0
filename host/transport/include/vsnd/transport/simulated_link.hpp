// Driver and device in one thread on a simulated clock. Waiting for an interrupt runs the device:
// it handles kicks, then jumps the clock to the device's next deadline, and so on until an
// interrupt arrives or the timeout passes. Deterministic, and hours of audio take seconds.
#pragma once

#include "vsnd/transport/device_end.hpp"

#include <algorithm>
#include <cstdint>

namespace vsnd::transport {

class SimulatedLink final : public LoopbackDriverEnd {
public:
    // The device end is created on the first wait (after the driver set up its rings).
    SimulatedLink(LoopbackTransport& t, device::SoundDevice& dev, SimulatedClock& clock);
    bool wait_interrupt(Nanos timeout) override;
    int interrupt_fd() override { return -1; } // the device runs only inside wait_interrupt
    // Runs the device until `t` without waiting for interrupts.
    void run_until(Nanos t);
    LoopbackDeviceEnd& device_end();
    // Interrupts reach the driver `min` to `max` late (uniform, seeded): the trip of a real
    // guest's notification (host -> hypervisor -> interrupt handler -> workqueue).
    void set_interrupt_jitter(Nanos max, std::uint64_t seed = 1, Nanos min = 0) {
        jitter_max_ = max;
        jitter_min_ = std::min(min, max);
        rng_ = seed;
    }
    // The next `n` interrupts are lost on their way (the driver never hears of them).
    void lose_interrupts(unsigned n) { lose_ = n; }
    // The device's timer fires up to `max` late, and the device thread is preempted up to `max`
    // between its work and computing its next deadline (uniform, seeded): a loaded host.
    void set_device_lateness(Nanos max) { lateness_max_ = max; }

private:
    Nanos next_random(Nanos max);
    Nanos jitter_max_ = 0, jitter_min_ = 0, lateness_max_ = 0;
    unsigned lose_ = 0;
    std::uint64_t rng_ = 1;
    device::SoundDevice& dev_;
    SimulatedClock& sim_;
    std::unique_ptr<LoopbackDeviceEnd> end_;
};

} // namespace vsnd::transport
