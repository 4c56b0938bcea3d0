// Driver model ↔ device model through real split virtqueues: audio arrives bit-exact, for every
// format, channel count and rate the device offers, in both directions, across pause/resume.
#include "../support/sim_rig.hpp"

#include <fmt/format.h>

namespace vsnd::test {
namespace {

using wire::PcmFormat;

driver::PcmConfig config(PcmFormat f, std::uint32_t rate, std::uint8_t ch, std::uint32_t period = 0) {
    // ~10 ms periods like Linux's minimum, 4 periods.
    return {f, rate, ch, period ? period : std::max<std::uint32_t>(rate / 100, 64), 4, 0};
}

void expect_played_exactly(SimRig& rig, std::uint32_t id, std::uint64_t frames) {
    auto rec = rig.card.record(id);
    ASSERT_TRUE(rec);
    const auto& cfg = rig.driver.stream(id).config();
    audio::TestSignal sig(cfg.format, cfg.channels);
    ASSERT_EQ(rec->frames_played(), frames);
    auto bad = sig.compare(rec->played, 0);
    EXPECT_FALSE(bad) << "first wrong frame " << *bad;
}

TEST(Playback, ProbeSeesTheTopology) {
    SimRig rig;
    rig.probe();
    EXPECT_EQ(rig.driver.stream_count(), 2u);
    EXPECT_EQ(rig.driver.stream(0).info().direction, wire::Direction::Output);
    EXPECT_EQ(rig.driver.stream(1).info().direction, wire::Direction::Input);
    EXPECT_EQ(rig.driver.chmaps().size(), 8u);
    EXPECT_EQ(rig.driver.chmaps()[1].channels, 2);
}

TEST(Playback, OneSecondS16StereoBitExact) {
    SimRig rig;
    rig.probe();
    auto& s = rig.driver.stream(0);
    ASSERT_TRUE(s.set_params(config(PcmFormat::S16, 48000, 2)));
    ASSERT_TRUE(s.prepare());
    ASSERT_TRUE(play_signal(rig, 0, 48000));
    ASSERT_TRUE(s.stop());
    ASSERT_TRUE(s.release());
    expect_played_exactly(rig, 0, 48000);
    EXPECT_EQ(s.periods_completed(), 100u);
    EXPECT_EQ(s.io_errors(), 0u);
    EXPECT_EQ(rig.device.stats(0).xruns, 0u);
}

struct SweepCase { PcmFormat format; std::uint32_t rate; std::uint8_t channels; };

class PlaybackSweep : public ::testing::TestWithParam<SweepCase> {};

TEST_P(PlaybackSweep, BitExactBothDirections) {
    const auto c = GetParam();
    SimRig rig;
    rig.probe();
    const std::uint64_t frames = c.rate / 5 + 7 * (c.rate / 100); // not a whole number of seconds
    auto& out = rig.driver.stream(0);
    ASSERT_TRUE(out.set_params(config(c.format, c.rate, c.channels)));
    ASSERT_TRUE(out.prepare());
    ASSERT_TRUE(play_signal(rig, 0, frames / out.config().period_frames * out.config().period_frames));
    ASSERT_TRUE(out.stop());
    ASSERT_TRUE(out.release());
    expect_played_exactly(rig, 0, frames / out.config().period_frames * out.config().period_frames);

    // Capture: the card produces the TestSignal from frame 0.
    auto& in = rig.driver.stream(1);
    ASSERT_TRUE(in.set_params(config(c.format, c.rate, c.channels)));
    ASSERT_TRUE(in.prepare());
    ASSERT_TRUE(in.start());
    std::vector<std::uint8_t> got;
    std::vector<std::uint8_t> buf(in.period_bytes());
    while (got.size() < frames * in.frame_bytes()) {
        if (in.readable_bytes() == 0) { ASSERT_TRUE(rig.driver.wait(kNanosPerSecond)); continue; }
        const std::size_t n = in.read(buf);
        got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    }
    ASSERT_TRUE(in.stop());
    ASSERT_TRUE(in.release());
    audio::TestSignal sig(c.format, c.channels);
    auto bad = sig.compare(got, 0);
    EXPECT_FALSE(bad) << "capture: first wrong frame " << *bad;
}

std::vector<SweepCase> sweep() {
    std::vector<SweepCase> v;
    for (auto f : {PcmFormat::S16, PcmFormat::S24, PcmFormat::S32, PcmFormat::Float})
        for (std::uint8_t ch : {1, 2, 6, 8})
            for (std::uint32_t r : {8000u, 44100u, 48000u, 96000u, 192000u}) v.push_back({f, r, ch});
    return v;
}

INSTANTIATE_TEST_SUITE_P(FormatsChannelsRates, PlaybackSweep, ::testing::ValuesIn(sweep()),
                         [](const auto& i) {
                             return fmt::format("{}_{}ch_{}Hz", wire::name(i.param.format), i.param.channels, i.param.rate);
                         });

TEST(Playback, PauseResumeLosesNothing) {
    SimRig rig;
    rig.probe();
    auto& s = rig.driver.stream(0);
    ASSERT_TRUE(s.set_params(config(PcmFormat::S16, 48000, 2)));
    ASSERT_TRUE(s.prepare());
    audio::TestSignal sig(PcmFormat::S16, 2);
    std::vector<std::uint8_t> buf(s.period_bytes());
    std::uint64_t written = 0;
    const std::uint64_t total = 480 * 200;
    bool started = false;
    int pauses = 0;
    while (written < total) {
        if (s.writable_bytes() >= buf.size()) {
            sig.fill(buf, written);
            written += s.write(buf) / s.frame_bytes();
            continue;
        }
        if (!started) { ASSERT_TRUE(s.start()); started = true; }
        ASSERT_TRUE(rig.driver.wait(kNanosPerSecond));
        if (written % 24000 == 0 && written > 0 && pauses < 3 && s.state() == driver::StreamState::Running) {
            // Pause with messages in flight, hold it for 300 ms, keep writing while paused.
            ++pauses;
            ASSERT_TRUE(s.stop());
            const std::uint64_t before = rig.card.record(0)->frames_played();
            rig.link.run_until(rig.clock.now() + 300'000'000);
            EXPECT_EQ(rig.card.record(0)->frames_played(), before) << "card played while paused";
            EXPECT_GT(s.in_flight(), 0u);
            ASSERT_TRUE(s.start());
        }
    }
    while (s.in_flight()) ASSERT_TRUE(rig.driver.wait(kNanosPerSecond));
    ASSERT_TRUE(s.stop());
    ASSERT_TRUE(s.release());
    EXPECT_EQ(pauses, 3);
    expect_played_exactly(rig, 0, total);
}

// A loaded host wakes the device late, sometimes after its FIFO ran dry: the card underruns, but
// every frame is still played, in order, and the device never goes to sleep on pending data.
TEST(Playback, DeviceWakingLateLosesNothing) {
    for (auto policy : {device::CompletionPolicy::Played, device::CompletionPolicy::Consumed}) {
        RigOptions o;
        o.card = {0, 64, 0, 128};
        o.policy = policy;
        SimRig rig(o);
        rig.link.set_device_lateness(15'000'000);
        rig.probe();
        auto& s = rig.driver.stream(0);
        ASSERT_TRUE(s.set_params(config(PcmFormat::S16, 48000, 2, 64)));
        ASSERT_TRUE(s.prepare());
        ASSERT_TRUE(play_signal(rig, 0, 64 * 500)) << "driver waited a second for nothing";
        ASSERT_TRUE(s.stop());
        ASSERT_TRUE(s.release());
        EXPECT_GT(rig.device.stats(0).xruns, 0u) << "the lateness should have starved the card";
        if (policy == device::CompletionPolicy::Played) {
            expect_played_exactly(rig, 0, 64 * 500);
        } else {
            // Completion on hand-off: the host FIFO's content at RELEASE (≤ 128 frames) is dropped.
            auto rec = rig.card.record(0);
            EXPECT_GE(rec->frames_played(), 64u * 500 - 128);
            EXPECT_FALSE(audio::TestSignal(PcmFormat::S16, 2).compare(rec->played, 0));
        }
    }
}

// Linux ignores latency_bytes before START and while paused: a hand-off completion then would
// advance its position by a period the listener has not heard. They wait for START.
TEST(Playback, ConsumedPolicyCompletesOnlyWhileRunning) {
    RigOptions o;
    o.policy = device::CompletionPolicy::Consumed;
    SimRig rig(o);
    rig.probe();
    auto& s = rig.driver.stream(0);
    ASSERT_TRUE(s.set_params(config(PcmFormat::S16, 48000, 2)));
    ASSERT_TRUE(s.prepare());
    std::vector<std::uint8_t> buf(s.period_bytes() * 2);
    ASSERT_EQ(s.write(buf), buf.size());
    rig.link.run_until(rig.clock.now() + 100'000'000);
    rig.driver.process_interrupts();
    EXPECT_EQ(s.in_flight(), 2u) << "pre-fill copied, but not completed before START";
    ASSERT_TRUE(s.start());
    while (s.in_flight()) ASSERT_TRUE(rig.driver.wait(kNanosPerSecond));
    EXPECT_EQ(s.periods_completed(), 2u);
    ASSERT_TRUE(s.stop());
    ASSERT_TRUE(s.release());
}

TEST(Playback, ReleaseCompletesPendingMessagesBeforeReplying) {
    SimRig rig;
    rig.probe();
    auto& s = rig.driver.stream(0);
    ASSERT_TRUE(s.set_params(config(PcmFormat::S16, 48000, 2)));
    ASSERT_TRUE(s.prepare());
    std::vector<std::uint8_t> buf(s.period_bytes() * 4);
    ASSERT_EQ(s.write(buf), buf.size());
    EXPECT_EQ(s.in_flight(), 4u);
    ASSERT_TRUE(s.release()); // never started: all four are still pending on the device
    EXPECT_EQ(s.in_flight(), 0u);
    // PREPARE again without SET_PARAMS, as Linux does after RELEASE.
    ASSERT_TRUE(s.prepare());
    ASSERT_TRUE(play_signal(rig, 0, 4800));
}

} // namespace
} // namespace vsnd::test
