// A complete simulated setup for tests: shared-memory transport, device model on a simulated
// sound card, driver model, all on one simulated clock.
#pragma once

#include "vsnd/audio/test_signal.hpp"
#include "vsnd/backends/simulated_card.hpp"
#include "vsnd/device/sound_device.hpp"
#include "vsnd/driver/sound_driver.hpp"
#include "vsnd/transport/simulated_link.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace vsnd::test {

struct RigOptions {
    device::Topology topology = device::Topology::standard(1, 1);
    backends::CardModel card{};
    device::CompletionPolicy policy = device::CompletionPolicy::Played;
    transport::LoopbackLayout layout{};
};

struct SimRig {
    explicit SimRig(RigOptions o = {})
        : opts(std::move(o)), transport(opts.layout), card(clock, opts.card),
          device(opts.topology, card, clock, opts.policy), link(transport, device, clock), driver(link, clock) {
        device.set_logger([this](const std::string& m) { device_log.push_back(m); });
        transport.publish_config(device.config(), device.device_features());
    }
    void probe() { auto r = driver.probe(); ASSERT_TRUE(r) << r.error().message; }

    RigOptions opts;
    SimulatedClock clock;
    transport::LoopbackTransport transport;
    backends::SimulatedCard card;
    device::SoundDevice device;
    transport::SimulatedLink link;
    driver::SoundDriver driver;
    std::vector<std::string> device_log;
};

// Plays `frames` of the TestSignal on stream `id` (already prepared), starting the stream once
// `prefill` periods are queued, then waits until every period completed. Returns false on stall.
inline bool play_signal(SimRig& rig, std::uint32_t id, std::uint64_t frames, unsigned prefill = 2) {
    auto& s = rig.driver.stream(id);
    audio::TestSignal sig(s.config().format, s.config().channels);
    std::vector<std::uint8_t> buf(s.period_bytes());
    std::uint64_t written = 0;
    bool started = s.state() == driver::StreamState::Running;
    while (written < frames) {
        const std::uint64_t chunk = std::min<std::uint64_t>(frames - written, s.config().period_frames);
        if (s.writable_bytes() >= chunk * s.frame_bytes()) {
            sig.fill(std::span(buf).first(chunk * s.frame_bytes()), written);
            written += s.write(std::span(buf).first(chunk * s.frame_bytes())) / s.frame_bytes();
            if (!started && written >= std::uint64_t{prefill} * s.config().period_frames) {
                if (!s.start()) return false;
                started = true;
            }
            continue;
        }
        if (!started) { if (!s.start()) return false; started = true; }
        if (!rig.driver.wait(kNanosPerSecond)) return false;
    }
    if (!started && !s.start()) return false;
    while (s.in_flight()) if (!rig.driver.wait(kNanosPerSecond)) return false;
    return true;
}

} // namespace vsnd::test
