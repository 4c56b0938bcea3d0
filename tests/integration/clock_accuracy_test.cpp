// The driver's playback clock against the simulated card's truth: a card running ±300 ppm off,
// with 0 or 20 ms output latency, behind a device completing on playback or on hand-off.
#include "../support/sim_rig.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace vsnd::test {
namespace {

struct ClockCase {
    double ppm;
    Nanos latency;
    device::CompletionPolicy policy;
};

// Interrupts reach the guest driver up to this late, uniformly: the clock must filter it.
constexpr Nanos kInterruptJitter = 600'000;

struct Sample { Nanos at; double estimate, naive, raw; };

struct ClockErrors {
    double max_ms = 0, median_ms = 0, naive_median_ms = 0, raw_max_ms = 0;
    std::size_t samples = 0;
};

// Plays `seconds` of audio and, at every completion, asks the clock where playback is now and
// where it will be half a period later (between completions). The naive estimate is what a driver
// ignoring latency_bytes would believe: completed frames = played frames.
ClockErrors measure(const ClockCase& c, double seconds) {
    RigOptions o;
    o.card = {c.ppm, 256, c.latency, 0};
    o.policy = c.policy;
    SimRig rig(o);
    rig.link.set_interrupt_jitter(kInterruptJitter);
    EXPECT_TRUE(rig.driver.probe());
    auto& s = rig.driver.stream(0);
    EXPECT_TRUE(s.set_params({wire::PcmFormat::S16, 48000, 2, 960, 8, 0}));
    EXPECT_TRUE(s.prepare());

    std::vector<Sample> samples;
    std::vector<std::uint8_t> buf(s.period_bytes());
    const std::uint64_t total = static_cast<std::uint64_t>(seconds * 48000) / 960 * 960;
    std::uint64_t written = 0, seen_periods = 0, xruns_while_fed = 0;
    bool started = false;
    const Nanos half_period = 10'000'000;
    while (written < total || s.in_flight()) {
        if (written < total && s.writable_bytes() >= buf.size()) {
            written += s.write(buf) / s.frame_bytes();
            continue;
        }
        if (!started) { EXPECT_TRUE(s.start()); started = true; }
        EXPECT_TRUE(rig.driver.wait(kNanosPerSecond));
        // The card runs dry once the last message has left it; before that, no underrun.
        if (written < total) xruns_while_fed = rig.device.stats(0).xruns;
        if (s.periods_completed() == seen_periods || !s.clock().valid()) continue;
        seen_periods = s.periods_completed();
        const Nanos now = rig.clock.now();
        const double naive = static_cast<double>(s.frames_completed());
        // raw: the unfiltered reading at this completion, extrapolated at the nominal rate.
        const double raw = naive - s.last_latency_bytes() / 4.0;
        for (Nanos at : {now, now + half_period})
            samples.push_back({at, *s.clock().frames_at(at), naive + (at - now) * 48e-6, raw + (at - now) * 48e-6});
    }
    EXPECT_TRUE(s.stop());
    EXPECT_TRUE(s.release());

    const auto rec = rig.card.record(0);
    const Nanos t0 = samples.front().at + 1'000'000'000; // one second to lock
    const Nanos t_end = rec->runs.empty() ? 0 : static_cast<Nanos>(*rec->audible_time(rec->frames_played() - 1));
    std::vector<double> err, naive;
    double raw_max = 0;
    for (const auto& smp : samples) {
        if (smp.at < t0 || smp.at > t_end) continue;
        const double truth = rec->frames_audible_at(smp.at);
        err.push_back(std::abs(smp.estimate - truth) / 48.0);
        naive.push_back(std::abs(smp.naive - truth) / 48.0);
        raw_max = std::max(raw_max, std::abs(smp.raw - truth) / 48.0);
    }
    ClockErrors r;
    r.samples = err.size();
    r.raw_max_ms = raw_max;
    if (err.empty()) return r;
    r.max_ms = *std::max_element(err.begin(), err.end());
    std::nth_element(err.begin(), err.begin() + err.size() / 2, err.end());
    r.median_ms = err[err.size() / 2];
    std::nth_element(naive.begin(), naive.begin() + naive.size() / 2, naive.end());
    r.naive_median_ms = naive[naive.size() / 2];
    EXPECT_EQ(xruns_while_fed, 0u);
    return r;
}

class PlaybackClockAccuracy : public ::testing::TestWithParam<ClockCase> {};

TEST_P(PlaybackClockAccuracy, WithinHalfAMillisecondOfTheCard) {
    const auto c = GetParam();
    const auto r = measure(c, 20.0);
    ASSERT_GT(r.samples, 1500u);
    RecordProperty("max_error_us", static_cast<int>(r.max_ms * 1000));
    std::printf("ppm %+5.0f latency %2lld ms %-8s: clock error median %.3f ms max %.3f ms "
                "(unfiltered max %.3f ms; ignoring latency_bytes median %.2f ms)\n",
                c.ppm, static_cast<long long>(c.latency / 1'000'000),
                c.policy == device::CompletionPolicy::Played ? "played" : "consumed", r.median_ms, r.max_ms,
                r.raw_max_ms, r.naive_median_ms);
    EXPECT_LE(r.max_ms, 0.5);
}

INSTANTIATE_TEST_SUITE_P(
    CardsAndPolicies, PlaybackClockAccuracy,
    ::testing::Values(ClockCase{+300, 0, device::CompletionPolicy::Played},
                      ClockCase{-300, 0, device::CompletionPolicy::Played},
                      ClockCase{+300, 20'000'000, device::CompletionPolicy::Played},
                      ClockCase{-300, 20'000'000, device::CompletionPolicy::Played},
                      ClockCase{+300, 0, device::CompletionPolicy::Consumed},
                      ClockCase{-300, 0, device::CompletionPolicy::Consumed},
                      ClockCase{+300, 20'000'000, device::CompletionPolicy::Consumed},
                      ClockCase{-300, 20'000'000, device::CompletionPolicy::Consumed}),
    [](const auto& i) {
        return fmt::format("{}{}ppm_{}ms_{}", i.param.ppm < 0 ? "minus" : "plus", std::abs(i.param.ppm),
                           i.param.latency / 1'000'000,
                           i.param.policy == device::CompletionPolicy::Played ? "played" : "consumed");
    });

// The measurement can fail: a driver that trusts completions alone (what QEMU's latency 0 makes
// every guest do) is off by the hidden buffering.
TEST(PlaybackClockAccuracy, IgnoringLatencyIsVisiblyWrong) {
    const auto r = measure({+300, 20'000'000, device::CompletionPolicy::Consumed}, 5.0);
    EXPECT_GT(r.naive_median_ms, 15.0);
    EXPECT_LE(r.median_ms, 0.5);
}

} // namespace
} // namespace vsnd::test
