#include "vsnd/transport/simulated_link.hpp"

#include <algorithm>

namespace vsnd::transport {

SimulatedLink::SimulatedLink(LoopbackTransport& t, device::SoundDevice& dev, SimulatedClock& clock)
    : LoopbackDriverEnd(t, clock), dev_(dev), sim_(clock) {}

LoopbackDeviceEnd& SimulatedLink::device_end() {
    if (!end_) end_ = std::make_unique<LoopbackDeviceEnd>(t_, dev_);
    return *end_;
}

Nanos SimulatedLink::next_random(Nanos max) {
    if (max <= 0) return 0;
    rng_ ^= rng_ << 13; // xorshift64: deterministic and good enough for a delay
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    return static_cast<Nanos>(rng_ % static_cast<std::uint64_t>(max + 1));
}

bool SimulatedLink::wait_interrupt(Nanos timeout) {
    auto& end = device_end();
    const Nanos deadline = sim_.now() + timeout;
    for (;;) {
        end.dispatch_kicks();
        if (consume_calls()) {
            if (lose_ == 0) {
                // The device keeps running while the interrupt is on its way.
                const Nanos arrival = sim_.now() + jitter_min_ + next_random(jitter_max_ - jitter_min_);
                while (auto next = dev_.next_deadline()) {
                    if (*next > arrival) break;
                    sim_.advance_to(*next > sim_.now() ? *next : sim_.now() + 1000);
                    dev_.process();
                }
                sim_.advance_to(arrival);
                dev_.process();
                consume_calls();
                return true;
            }
            --lose_; // lost on its way: the driver never hears of it
        }
        // A loaded host also preempts the device thread between its work and its next look at
        // the clock; whatever it then finds must still get done.
        if (lateness_max_ > 0) sim_.advance_to(std::min(deadline, sim_.now() + next_random(lateness_max_)));
        const auto next = dev_.next_deadline();
        if (!next || *next > deadline) {
            // Like a real device, it sleeps until its own deadline or a kick, nothing else.
            sim_.advance_to(deadline);
            return consume_calls();
        }
        // A deadline that does not move the clock must still make progress.
        const Nanos wake = *next > sim_.now() ? *next + next_random(lateness_max_) : sim_.now() + 1000;
        if (wake > deadline) {
            sim_.advance_to(deadline);
            return consume_calls();
        }
        sim_.advance_to(wake);
        dev_.process();
    }
}

void SimulatedLink::run_until(Nanos t) {
    while (sim_.now() < t) wait_interrupt(t - sim_.now());
}

} // namespace vsnd::transport
