// The receiver playing into the virtio-snd driver model, the device model and a simulated card,
// all on one simulated clock: the deterministic rig of the whole chain. The receiver's idea of
// what is still to be played comes from the device's completions (and latency_bytes); the card
// records when each frame was really audible, so the receiver's latency can be held against the
// truth — and a device that completes on hand-off without saying so is shown to mislead it.
#include "../support/sim_rig.hpp"
#include "scenario_rig.hpp"

#include "vsnd/rtp/driver_sink.hpp"

namespace vsnd::rtp::test {
namespace {

struct ChainOptions {
    backends::CardModel card{};
    device::CompletionPolicy policy = device::CompletionPolicy::Played;
    DriftCorrection drift = DriftCorrection::Off;
    double sender_ppm = 0;
    Nanos duration = 20 * kSec;
    Nanos interrupt_jitter = 0;
};

struct ChainOutcome {
    std::vector<double> pending_error_ms; // the sink's pending minus the truth, after 2 s
    std::vector<double> true_latency_ms;  // arrival of content frame k to its being audible (Off only)
    std::vector<double> measured_latency_ms;
    ReceiverCounters counters;
    std::uint64_t xruns = 0;
};

ChainOutcome run_chain(const ChainOptions& co) {
    vsnd::test::RigOptions ro;
    ro.card = co.card;
    ro.policy = co.policy;
    vsnd::test::SimRig rig(ro);
    rig.probe();
    if (co.interrupt_jitter) rig.link.set_interrupt_jitter(co.interrupt_jitter, 7);
    GeneratorOptions g;
    g.format = PayloadFormat{Encoding::L16, 48000, 2, 96};
    g.ppm = co.sender_ppm;
    ReceiverOptions rxo;
    rxo.format = g.format;
    rxo.drift = co.drift;
    RtpReceiver rx(rxo);
    auto sink = DriverSink::open(rig.driver, 0, driver::PcmConfig{wire::PcmFormat::S16, 48000, 2, 240, 4, 0});
    EXPECT_TRUE(sink) << sink.error();
    ChainOutcome out;
    if (!sink) return out;
    Playout playout(rx, **sink);
    StreamGenerator gen(g, rig.clock.now());
    const Nanos t0 = rig.clock.now(), end = t0 + co.duration;
    std::vector<std::pair<Nanos, std::vector<std::uint8_t>>> wire;
    std::vector<Nanos> arrival_of_packet; // by packet index: when it reached the receiver
    Nanos next_sample = t0;
    auto service = [&] {
        const Nanos now = rig.clock.now();
        playout.service(now);
        if (now >= next_sample && now > t0 + 2 * kSec) {
            next_sample = now + 50 * kMs;
            auto rec = rig.card.record(0);
            auto& s = (*sink)->stream();
            if (rec && rec->frames_played() > 0) {
                const double truth = static_cast<double>(s.written_frames()) - rec->frames_audible_at(now);
                out.pending_error_ms.push_back((*(*sink)->pending(now) - truth) / 48.0);
            }
            if (auto l = rx.status().latency_s) out.measured_latency_ms.push_back(*l * 1e3);
        }
    };
    while (rig.clock.now() < end) {
        Nanos t = std::min({end, gen.next_time(), (*sink)->next_wake(rig.clock.now())});
        for (auto& w : wire) t = std::min(t, w.first);
        // The device runs until then; every interrupt reaches the driver (and the receiver) at once.
        while (rig.clock.now() < t) {
            if (rig.link.wait_interrupt(t - rig.clock.now())) service();
        }
        const Nanos now = rig.clock.now();
        while (gen.next_time() <= now) {
            auto p = gen.next();
            wire.emplace_back(now + 500'000, std::vector<std::uint8_t>(p.begin(), p.end()));
        }
        while (!wire.empty() && wire.front().first <= now) {
            rx.on_packet(wire.front().second, now);
            arrival_of_packet.push_back(now);
            wire.erase(wire.begin());
        }
        service();
    }
    out.counters = rx.counters();
    out.xruns = (*sink)->xruns();
    // The true end-to-end latency, from the card's record: content frame k (first of packet k/48)
    // sits at output frame offset + k when nothing was resampled.
    if (co.drift == DriftCorrection::Off) {
        auto rec = rig.card.record(0);
        const std::size_t fb = rec->frame_bytes;
        std::size_t first = 0;
        while ((first + 1) * fb <= rec->played.size() &&
               std::all_of(rec->played.begin() + first * fb, rec->played.begin() + (first + 1) * fb, [](auto b) { return b == 0; }))
            ++first;
        for (std::size_t pkt = 100; pkt < arrival_of_packet.size(); pkt += 100) {
            const std::uint64_t frame = first + pkt * 48;
            if (auto when = rec->audible_time(frame)) out.true_latency_ms.push_back((*when - arrival_of_packet[pkt]) / 1e6);
        }
    }
    return out;
}

double max_abs(const std::vector<double>& v) {
    double m = 0;
    for (double x : v) m = std::max(m, std::abs(x));
    return m;
}

TEST(DriverSink, TheReceiverSeesWhatTheCardPlaysAndHoldsTheTrueLatency) {
    ChainOptions co;
    co.card.output_latency = 10 * kMs; // reported honestly through latency_bytes
    auto o = run_chain(co);
    EXPECT_EQ(o.counters.underruns, 0u);
    EXPECT_EQ(o.xruns, 0u);
    ASSERT_FALSE(o.pending_error_ms.empty());
    EXPECT_LT(max_abs(o.pending_error_ms), 1.0) << "the sink's pending frames follow the card";
    ASSERT_FALSE(o.true_latency_ms.empty());
    for (double l : o.true_latency_ms) EXPECT_NEAR(l, 40.0, 1.0) << "arrival to audible, by the card's record";
    EXPECT_NEAR(median(o.measured_latency_ms), 40.0, 0.5);
}

TEST(DriverSink, TheMeasuredLatencyIsTheTrueOneWhenTheCardDrifts) {
    // Without drift correction the latency wanders off with the card's clock; what the receiver
    // measures must wander with the truth.
    ChainOptions co;
    co.card.ppm = 300;
    co.duration = 30 * kSec;
    auto o = run_chain(co);
    ASSERT_GT(o.true_latency_ms.size(), 100u);
    EXPECT_LT(median(o.true_latency_ms), 37.0) << "the card ran ahead";
    EXPECT_NEAR(median(o.measured_latency_ms), median(o.true_latency_ms), 0.5);
}

TEST(DriverSink, InterruptJitterBiasesThePlaybackClockByAboutAMillisecond) {
    // Interrupts reaching the driver up to 2 ms late (a guest's scheduling): the receiver's
    // figure stays within 2.5 ms of the truth. This is the driver model's PlaybackClock taking
    // late stamps at face value — a known gap, left to the timing issue; the test pins its size.
    ChainOptions co;
    co.interrupt_jitter = 2 * kMs;
    auto o = run_chain(co);
    EXPECT_EQ(o.counters.underruns, 0u);
    ASSERT_FALSE(o.true_latency_ms.empty());
    EXPECT_NEAR(median(o.measured_latency_ms), median(o.true_latency_ms), 2.5);
}

TEST(DriverSink, DriftOnBothSidesIsCorrectedThroughTheDevice) {
    for (double ppm : {300.0, -300.0}) {
        ChainOptions co;
        co.card.ppm = ppm;
        co.sender_ppm = -ppm; // both at once, opposite ways
        co.drift = DriftCorrection::Resample;
        co.duration = 60 * kSec;
        auto o = run_chain(co);
        EXPECT_EQ(o.counters.underruns + o.counters.resyncs + o.xruns, 0u) << ppm;
        ASSERT_GT(o.measured_latency_ms.size(), 200u);
        std::vector<double> late(o.measured_latency_ms.end() - 200, o.measured_latency_ms.end());
        for (double l : late) EXPECT_NEAR(l, 40.0, 2.0) << ppm;
    }
}

} // namespace
} // namespace vsnd::rtp::test
