#include "vsnd/transport/simulated_link.hpp"

namespace vsnd::transport {

SimulatedLink::SimulatedLink(LoopbackTransport& t, device::SoundDevice& dev, SimulatedClock& clock)
    : LoopbackDriverEnd(t, clock), dev_(dev), sim_(clock) {}

LoopbackDeviceEnd& SimulatedLink::device_end() {
    if (!end_) end_ = std::make_unique<LoopbackDeviceEnd>(t_, dev_);
    return *end_;
}

bool SimulatedLink::wait_interrupt(Nanos timeout) {
    auto& end = device_end();
    const Nanos deadline = sim_.now() + timeout;
    for (;;) {
        end.dispatch_kicks();
        if (consume_calls()) return true;
        const auto next = dev_.next_deadline();
        if (!next || *next > deadline) {
            sim_.advance_to(deadline);
            dev_.process();
            return consume_calls();
        }
        // A deadline that does not move the clock must still make progress.
        sim_.advance_to(*next > sim_.now() ? *next : sim_.now() + 1000);
        dev_.process();
    }
}

void SimulatedLink::run_until(Nanos t) {
    while (sim_.now() < t) wait_interrupt(t - sim_.now());
}

} // namespace vsnd::transport
