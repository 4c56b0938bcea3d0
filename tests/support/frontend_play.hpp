// The driver model playing through the vhost-user front-end: the closing check of every test that
// attacks or disturbs a backend ("a proper front-end still gets a working device").
#pragma once

#include "vsnd/audio/test_signal.hpp"
#include "vsnd/driver/sound_driver.hpp"
#include "vsnd/timing/clock.hpp"
#include "vsnd/vhost_user/frontend.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <optional>
#include <vector>

namespace vsnd::test {

inline constexpr auto kPlayFormat = wire::PcmFormat::S16;
inline const driver::PcmConfig kPlayConfig{kPlayFormat, 48000, 2, 480, 4, 0}; // 10 ms periods

// Where play() is: 'p' about to PREPARE, 's' started, 'd' everything written (draining).
using PlayPhase = std::function<void(char)>;

// Plays frames [0, frames) of the TestSignal on stream 0; stops early (returning success) after
// `stop_after` frames were written if given.
inline ::testing::AssertionResult play(driver::SoundDriver& drv, std::uint64_t frames,
                                       std::optional<std::uint64_t> stop_after = std::nullopt,
                                       const PlayPhase& phase = {}) {
    auto mark = [&](char c) {
        if (phase) phase(c);
    };
    auto& s = drv.stream(0);
    if (auto r = s.set_params(kPlayConfig); !r) return ::testing::AssertionFailure() << r.error().message;
    mark('p');
    if (auto r = s.prepare(); !r) return ::testing::AssertionFailure() << r.error().message;
    audio::TestSignal sig(kPlayFormat, 2);
    std::vector<std::uint8_t> buf(s.period_bytes());
    std::uint64_t written = 0;
    bool started = false;
    while (written < frames || s.in_flight()) {
        if (stop_after && written >= *stop_after) return ::testing::AssertionSuccess();
        if (written < frames && s.writable_bytes() >= buf.size()) {
            sig.fill(buf, written);
            written += s.write(buf) / s.frame_bytes();
            if (!started && written >= 2 * kPlayConfig.period_frames) {
                if (auto r = s.start(); !r) return ::testing::AssertionFailure() << r.error().message;
                started = true;
                mark('s');
            }
            if (written >= frames) mark('d');
            continue;
        }
        if (!drv.wait(kNanosPerSecond))
            return ::testing::AssertionFailure() << "no interrupt for 1 s (written " << written << ", in flight "
                                                 << s.in_flight() << ")";
    }
    if (auto r = s.stop(); !r) return ::testing::AssertionFailure() << r.error().message;
    if (auto r = s.release(); !r) return ::testing::AssertionFailure() << r.error().message;
    return ::testing::AssertionSuccess();
}

// A new front-end connects to `socket`, probes and plays `frames`.
inline ::testing::AssertionResult front_end_plays(const std::filesystem::path& socket, std::uint64_t frames = 4800) {
    MonotonicClock clock;
    auto fe = vhost_user::Frontend::connect(socket);
    if (!fe) return ::testing::AssertionFailure() << fe.error();
    driver::SoundDriver drv(**fe, clock);
    if (auto r = drv.probe(); !r) return ::testing::AssertionFailure() << r.error().message;
    return play(drv, frames);
}

} // namespace vsnd::test
