// The backend interface: the rate a backend reports drives the device's extrapolation, a backend
// fed by its own thread wakes the device loop (nothing polled), capabilities narrow the topology,
// the registry hands global and per-stream options to the backend it creates, and a wake-up
// services only the streams with work.
#include "../support/backend_rig.hpp"
#include "vsnd/backends/simulated_card.hpp"
#include "vsnd/device/backend_registry.hpp"
#include "vsnd/device/sound_device.hpp"
#include "vsnd/driver/sound_driver.hpp"
#include "vsnd/transport/device_end.hpp"
#include "vsnd/transport/device_runner.hpp"
#include "vsnd/transport/simulated_link.hpp"

#include <boost/asio/post.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <optional>
#include <chrono>
#include <thread>

namespace vsnd::test {
namespace {

// A stream whose position and room the test scripts. Accepts everything written.
class ScriptedStream final : public device::BackendStream {
public:
    ScriptedStream(const Clock& clock, double ratio, std::atomic<std::size_t>& room, device::Waker* waker_out)
        : clock_(clock), ratio_(ratio), room_(room), waker_out_(waker_out) {}
    void set_waker(device::Waker w) override { if (waker_out_) *waker_out_ = std::move(w); }
    void start() override { running_ = true; started_ = clock_.now(); }
    void stop() override { running_ = false; }
    std::size_t writable_bytes() override { return room_.load(); }
    void write(std::span<const std::uint8_t> b) override { room_ -= b.size(); }
    std::size_t readable_bytes() override { return 0; }
    void read(std::span<std::uint8_t>) override {}
    device::Position position() override { return {0, started_, running_, ratio_}; }
    std::optional<Nanos> next_wakeup() override { return std::nullopt; }
    std::uint64_t xruns() const override { return 0; }

private:
    const Clock& clock_;
    double ratio_;
    std::atomic<std::size_t>& room_;
    device::Waker* waker_out_;
    bool running_ = false;
    Nanos started_ = 0;
};

class ScriptedBackend final : public device::AudioBackend {
public:
    ScriptedBackend(const Clock& clock, double ratio, std::size_t room) : clock_(clock), ratio_(ratio), room_(room) {}
    std::string name() const override { return "scripted"; }
    Expected<std::unique_ptr<device::BackendStream>, std::string> open(std::uint32_t, const device::StreamFormat&) override {
        return std::unique_ptr<device::BackendStream>(std::make_unique<ScriptedStream>(clock_, ratio_, room_, &waker));
    }
    const Clock& clock_;
    double ratio_;
    std::atomic<std::size_t> room_;
    device::Waker waker;
};

// One 480-frame period at 48 kHz completes when its last frame is audible: 10 ms after start at
// the nominal rate, 10 ms / ratio by a backend clock that runs `ratio` fast.
Nanos completion_deadline(double ratio) {
    SimulatedClock clock;
    ScriptedBackend backend(clock, ratio, 1 << 20);
    BackendRig rig(clock, backend, device::Topology::standard(1, 0));
    auto& dev = rig.dev;
    auto& drv = rig.drv;
    EXPECT_TRUE(drv.probe());
    auto& s = drv.stream(0);
    EXPECT_TRUE(s.set_params({wire::PcmFormat::S16, 48000, 2, 480, 4, 0}));
    EXPECT_TRUE(s.prepare());
    std::vector<std::uint8_t> buf(s.period_bytes());
    EXPECT_EQ(s.write(buf), buf.size());
    const Nanos t0 = clock.now();
    EXPECT_TRUE(s.start());
    dev.process();
    const auto next = dev.next_deadline();
    EXPECT_TRUE(next.has_value());
    return next.value_or(0) - t0;
}

TEST(BackendInterface, DeviceExtrapolatesAtTheRateTheBackendReports) {
    EXPECT_EQ(completion_deadline(1.0), 10'000'000);
    // 10 ms / 1.0005 = 9 995 002.5 ns, rounded up to the first instant the frame is audible.
    EXPECT_EQ(completion_deadline(1.0005), 9'995'003);
    EXPECT_EQ(completion_deadline(0.9995), 10'005'003);
    // Nonsense ratios are taken as nominal, never as a reason to complete early.
    EXPECT_EQ(completion_deadline(2.0), 10'000'000);
    EXPECT_EQ(completion_deadline(std::numeric_limits<double>::quiet_NaN()), 10'000'000);
}

// A backend with no room, fed by "its own thread" (the test), wakes the loop when room appears;
// the device has no deadline meanwhile, so only the wake-up can move the message.
TEST(BackendInterface, BackendThreadWakesTheDeviceLoop) {
    MonotonicClock clock;
    ScriptedBackend backend(clock, 1.0, 0);
    device::SoundDevice dev(device::Topology::standard(1, 0), backend, clock, device::CompletionPolicy::Consumed);
    transport::LoopbackTransport t;
    t.publish_config(dev.config(), 0);
    transport::LoopbackDriverEnd driver_end(t, clock);
    transport::LoopbackDeviceEnd device_end(t, dev);
    boost::asio::io_context io;
    transport::DeviceRunner runner(io, device_end);
    runner.start();
    std::thread loop_thread([&] { io.run(); });
    auto work = boost::asio::make_work_guard(io);

    driver::SoundDriver drv(driver_end, clock);
    ASSERT_TRUE(drv.probe());
    auto& s = drv.stream(0);
    ASSERT_TRUE(s.set_params({wire::PcmFormat::S16, 48000, 2, 480, 4, 0}));
    ASSERT_TRUE(s.prepare());
    std::vector<std::uint8_t> buf(s.period_bytes());
    ASSERT_EQ(s.write(buf), buf.size());
    ASSERT_TRUE(s.start());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(s.in_flight(), 1u) << "no room: nothing can complete";
    EXPECT_FALSE(drv.wait(20'000'000)) << "no interrupt without room";

    backend.room_ = buf.size();
    ASSERT_TRUE(backend.waker) << "the device handed the stream its waker";
    backend.waker(); // from this thread, as a backend's audio thread would
    bool completed = false;
    for (int i = 0; i < 100 && !completed; ++i) {
        drv.wait(20'000'000);
        completed = s.in_flight() == 0;
    }
    EXPECT_TRUE(completed) << "the wake-up moved the message and it completed";
    boost::asio::post(io, [&] { runner.stop(); work.reset(); io.stop(); });
    loop_thread.join();
}

// A backend whose open finishes on "its own thread" at a scripted instant: Opening until then,
// Ready or Failed after. Takes every frame at once.
class GatedStream final : public device::BackendStream {
public:
    GatedStream(const Clock& clock, Nanos ready_at, bool fail) : clock_(clock), ready_at_(ready_at), fail_(fail) {}
    device::OpenState open_state() override {
        ++*polls;
        if (clock_.now() < ready_at_) return {device::OpenState::Opening, {}};
        if (fail_) return {device::OpenState::Failed, "scripted failure"};
        return {};
    }
    void start() override {}
    void stop() override {}
    std::size_t writable_bytes() override { return 1 << 20; }
    void write(std::span<const std::uint8_t> b) override { written_ += b.size(); }
    std::size_t readable_bytes() override { return 0; }
    void read(std::span<std::uint8_t>) override {}
    device::Position position() override { return {written_ / 4, clock_.now(), false}; }
    std::optional<Nanos> next_wakeup() override { return std::nullopt; }
    std::uint64_t xruns() const override { return 0; }
    int* polls = nullptr;

private:
    const Clock& clock_;
    Nanos ready_at_;
    bool fail_;
    std::uint64_t written_ = 0;
};

class GatedBackend final : public device::AudioBackend {
public:
    GatedBackend(const Clock& clock, Nanos open_takes, bool fail) : clock_(clock), open_takes_(open_takes), fail_(fail) {}
    std::string name() const override { return "gated"; }
    Expected<std::unique_ptr<device::BackendStream>, std::string> open(std::uint32_t, const device::StreamFormat&) override {
        auto s = std::make_unique<GatedStream>(clock_, clock_.now() + open_takes_, fail_);
        s->polls = &polls;
        return std::unique_ptr<device::BackendStream>(std::move(s));
    }
    int polls = 0;

private:
    const Clock& clock_;
    Nanos open_takes_;
    bool fail_;
};

struct DeferredPrepareRun {
    std::vector<std::string> answers; // in the order the driver got them
    Nanos prepare_answered = -1;      // after the PREPARE was sent
    std::string prepare_error;
};

// Sends PREPARE, then PCM_INFO right behind it, without waiting; steps the
// simulated world in 250 µs slices and records the order and time of the answers.
DeferredPrepareRun run_deferred_prepare(Nanos open_takes, bool fail) {
    SimulatedClock clock;
    GatedBackend backend(clock, open_takes, fail);
    BackendRig rig(clock, backend, device::Topology::standard(1, 0));
    auto& drv = rig.drv;
    EXPECT_TRUE(drv.probe());
    auto& s = drv.stream(0);
    EXPECT_TRUE(s.set_params({wire::PcmFormat::S16, 48000, 2, 480, 4, 0}));

    DeferredPrepareRun run;
    const Nanos t0 = clock.now();
    const auto prepare = wire::encode(wire::PcmHeader{wire::Code::PcmPrepare, 0});
    EXPECT_TRUE(drv.control_async(prepare, 0, [&](const driver::Result& r, std::span<const std::uint8_t>) {
        run.answers.push_back("prepare");
        run.prepare_answered = clock.now() - t0;
        if (!r) run.prepare_error = r.error().message;
    }));
    const auto info = wire::encode(wire::QueryInfo{wire::Code::PcmInfo, 0, 1, wire::wire_size<wire::PcmInfo>});
    EXPECT_TRUE(drv.control_async(info, wire::wire_size<wire::PcmInfo>,
                                  [&](const driver::Result&, std::span<const std::uint8_t>) { run.answers.push_back("info"); }));
    for (int i = 0; i < 4 * 1000 * 2 && run.answers.size() < 2; ++i) rig.step();
    return run;
}

TEST(BackendInterface, PrepareIsAnsweredWhenTheBackendHasOpened) {
    const auto run = run_deferred_prepare(30'000'000, false);
    ASSERT_EQ(run.answers, (std::vector<std::string>{"prepare", "info"})) << "later requests wait behind it, in order";
    EXPECT_EQ(run.prepare_error, "");
    // Without a waker the device looks every millisecond: answered within 1.25 ms of the open.
    EXPECT_GE(run.prepare_answered, 30'000'000);
    EXPECT_LE(run.prepare_answered, 31'250'000);
}

TEST(BackendInterface, PrepareFailsWhenTheBackendOpenFails) {
    const auto run = run_deferred_prepare(5'000'000, true);
    ASSERT_EQ(run.answers, (std::vector<std::string>{"prepare", "info"}));
    EXPECT_NE(run.prepare_error, "") << "IO_ERR";
    EXPECT_LE(run.prepare_answered, 6'250'000);
}

TEST(BackendInterface, PrepareTimesOutBeforeTheGuestDoes) {
    const auto run = run_deferred_prepare(10 * kNanosPerSecond, false);
    ASSERT_EQ(run.answers, (std::vector<std::string>{"prepare", "info"}));
    EXPECT_NE(run.prepare_error, "") << "IO_ERR from the device, not the driver's own timeout";
    EXPECT_GE(run.prepare_answered, device::SoundDevice::kOpenTimeout);
    EXPECT_LT(run.prepare_answered, device::SoundDevice::kOpenTimeout + 1'250'000);
    EXPECT_LT(device::SoundDevice::kOpenTimeout, driver::SoundDriver::Options{}.msg_timeout);
}

// Two PREPAREs sent together, each backend taking 600 ms: the second waited behind the first, so
// it gets only what is left of the 750 ms (the guest's timeout runs from when it sent it), and
// its stream, left without a backend, refuses START instead of crashing the device.
TEST(BackendInterface, RequestsQueuedBehindASlowPrepareShareItsTimeout) {
    SimulatedClock clock;
    GatedBackend backend(clock, 600'000'000, false);
    BackendRig rig(clock, backend, device::Topology::standard(2, 0));
    auto& drv = rig.drv;
    ASSERT_TRUE(drv.probe());
    for (unsigned i = 0; i < 2; ++i) ASSERT_TRUE(drv.stream(i).set_params({wire::PcmFormat::S16, 48000, 2, 480, 4, 0}));
    const Nanos t0 = clock.now();
    Nanos answered[2] = {-1, -1};
    bool ok[2] = {false, false};
    for (unsigned i = 0; i < 2; ++i) {
        const auto req = wire::encode(wire::PcmHeader{wire::Code::PcmPrepare, i});
        ASSERT_TRUE(drv.control_async(req, 0, [&, i](const driver::Result& r, std::span<const std::uint8_t>) {
            answered[i] = clock.now() - t0;
            ok[i] = r.has_value();
        }));
    }
    for (int i = 0; i < 8000 && answered[1] < 0; ++i) rig.step();
    EXPECT_TRUE(ok[0]);
    EXPECT_GE(answered[0], 600'000'000);
    EXPECT_FALSE(ok[1]) << "IO_ERR";
    EXPECT_LT(answered[1], device::SoundDevice::kOpenTimeout + 1'250'000) << "not 600 + 750 ms";
    EXPECT_LT(answered[1], driver::SoundDriver::Options{}.msg_timeout);
    // Stream 1 has no backend now: START is refused (its state went back to "parameters set").
    const auto start = wire::encode(wire::PcmHeader{wire::Code::PcmStart, 1});
    std::optional<wire::Status> start_status;
    ASSERT_TRUE(drv.control_async(start, 0, [&](const driver::Result& r, std::span<const std::uint8_t>) {
        start_status = r ? wire::Status::Ok : r.error().status;
    }));
    for (int i = 0; i < 100 && !start_status; ++i) rig.step();
    ASSERT_TRUE(start_status);
    EXPECT_EQ(*start_status, wire::Status::BadMsg);
    EXPECT_EQ(rig.dev.stats(1).state, device::PcmState::ParamsSet);
}

TEST(BackendInterface, CapabilitiesNarrowTheTopology) {
    device::Capabilities all;
    auto& caps = all.output;
    caps.formats = device::format_bits({wire::PcmFormat::S16, wire::PcmFormat::S32});
    caps.rates = device::rate_bits({wire::PcmRate::R44100, wire::PcmRate::R48000});
    caps.channels_max = 2;
    all.input = caps;
    auto t = device::Topology::standard(1, 1);
    auto r = device::fit_topology(t, all);
    EXPECT_EQ(r.status, device::Fit::Adjusted);
    EXPECT_FALSE(r.notes.empty());
    for (const auto& s : t.streams) {
        EXPECT_EQ(s.formats, caps.formats);
        EXPECT_EQ(s.rates, caps.rates);
        EXPECT_EQ(s.channels_max, 2);
    }
    for (const auto& m : t.chmaps) EXPECT_LE(m.positions.size(), 2u) << "6/8-channel maps are not offered";
    EXPECT_TRUE(t.validate().empty());

    auto same = device::Topology::standard(1, 1);
    EXPECT_EQ(device::fit_topology(same, device::Capabilities{}).status, device::Fit::Valid);

    device::Capabilities playback_only;
    playback_only.input.available = false;
    playback_only.input.why_not = "no capture PCM";
    auto both = device::Topology::standard(1, 1);
    auto bad = device::fit_topology(both, playback_only);
    EXPECT_EQ(bad.status, device::Fit::Invalid);
    ASSERT_EQ(bad.notes.size(), 1u);
    EXPECT_NE(bad.notes[0].find("cannot do capture: no capture PCM"), std::string::npos) << bad.notes[0];

    device::Capabilities u8_only;
    u8_only.output.formats = device::format_bits({wire::PcmFormat::U8});
    auto std_t = device::Topology::standard(1, 0);
    auto none = device::fit_topology(std_t, u8_only);
    EXPECT_EQ(none.status, device::Fit::Invalid);
    EXPECT_NE(none.notes[0].find("none of the formats"), std::string::npos) << none.notes[0];
}

TEST(BackendInterface, OptionsReachTheBackendPerStream) {
    device::BackendOptions o;
    ASSERT_TRUE(o.add("device=hw:0"));
    ASSERT_TRUE(o.add("1:device=hw:1"));
    EXPECT_EQ(o.get(0, "device"), "hw:0");
    EXPECT_EQ(o.get(1, "device"), "hw:1");
    EXPECT_EQ(o.get(2, "device"), "hw:0");
    EXPECT_FALSE(o.get(0, "other"));
    EXPECT_FALSE(o.add("novalue"));
    EXPECT_FALSE(o.add("=x"));
    EXPECT_FALSE(o.add("x:device=1"));
    EXPECT_FALSE(o.add("1:=1"));

    device::BackendRegistry reg;
    std::string seen;
    reg.add({"probe", "test", {{"device", "PCM", true}, {"global", "not per stream"}},
             [&](const Clock& clock, const device::BackendOptions& opts)
                 -> Expected<std::unique_ptr<device::AudioBackend>, std::string> {
                 seen = opts.get(1, "device").value_or("");
                 return std::unique_ptr<device::AudioBackend>(std::make_unique<ScriptedBackend>(clock, 1.0, 0));
             }});
    MonotonicClock clock;
    auto b = reg.create("probe", clock, o);
    ASSERT_TRUE(b) << b.error();
    EXPECT_EQ(seen, "hw:1");
    device::BackendOptions unknown;
    ASSERT_TRUE(unknown.add("2:rate=5"));
    auto refused = reg.create("probe", clock, unknown);
    ASSERT_FALSE(refused);
    EXPECT_NE(refused.error().find("no option 'rate'"), std::string::npos) << refused.error();
    device::BackendOptions per_stream_global;
    ASSERT_TRUE(per_stream_global.add("0:global=1"));
    auto not_per_stream = reg.create("probe", clock, per_stream_global);
    ASSERT_FALSE(not_per_stream);
    EXPECT_NE(not_per_stream.error().find("not per stream"), std::string::npos) << not_per_stream.error();
    EXPECT_EQ(o.streams(), std::vector<std::uint32_t>{1});
    auto missing = reg.create("nope", clock, o);
    ASSERT_FALSE(missing);
    EXPECT_NE(missing.error().find("have: probe"), std::string::npos) << missing.error();
}

} // namespace
} // namespace vsnd::test

namespace vsnd::test {
namespace {

// Counts what the device asks of each stream's backend (any call), around the simulated card.
class CountingStream final : public device::BackendStream {
public:
    CountingStream(std::unique_ptr<device::BackendStream> inner, std::uint64_t& calls) : inner_(std::move(inner)), calls_(calls) {}
    void start() override { ++calls_, inner_->start(); }
    void stop() override { ++calls_, inner_->stop(); }
    std::size_t writable_bytes() override { return ++calls_, inner_->writable_bytes(); }
    void write(std::span<const std::uint8_t> b) override { ++calls_, inner_->write(b); }
    std::size_t readable_bytes() override { return ++calls_, inner_->readable_bytes(); }
    void read(std::span<std::uint8_t> out) override { ++calls_, inner_->read(out); }
    device::Position position() override { return ++calls_, inner_->position(); }
    std::optional<Nanos> next_wakeup() override { return ++calls_, inner_->next_wakeup(); }
    std::uint64_t xruns() const override { return ++calls_, inner_->xruns(); }

private:
    std::unique_ptr<device::BackendStream> inner_;
    std::uint64_t& calls_;
};

class CountingBackend final : public device::AudioBackend {
public:
    CountingBackend(device::AudioBackend& inner, std::size_t streams) : inner_(inner), calls(streams, 0) {}
    std::string name() const override { return "counting"; }
    Expected<std::unique_ptr<device::BackendStream>, std::string> open(std::uint32_t id, const device::StreamFormat& f) override {
        auto s = inner_.open(id, f);
        if (!s) return Unexpected{s.error()};
        return std::unique_ptr<device::BackendStream>(std::make_unique<CountingStream>(std::move(*s), calls.at(id)));
    }
    device::AudioBackend& inner_;
    std::vector<std::uint64_t> calls;
};

// 256 streams, all prepared, one of them started and playing: a second of it asks nothing of the
// 255 idle ones (a wake-up services the streams with work, not every stream), and the one playing
// costs what it costs alone.
TEST(BackendInterface, WakeUpsTouchOnlyTheStreamsWithWork) {
    auto backend_calls_for_one_second = [](std::size_t streams) {
        SimulatedClock clock;
        backends::SimulatedCard card(clock, backends::CardModel{});
        CountingBackend counting(card, streams);
        BackendRig rig(clock, counting, device::Topology::standard(static_cast<unsigned>(streams), 0));
        EXPECT_TRUE(rig.drv.probe());
        const driver::PcmConfig cfg{wire::PcmFormat::S16, 48000, 2, 480, 4, 0};
        for (std::uint32_t id = 0; id < streams; ++id) {
            EXPECT_TRUE(rig.drv.stream(id).set_params(cfg));
            EXPECT_TRUE(rig.drv.stream(id).prepare());
        }
        EXPECT_TRUE(rig.drv.stream(0).start());
        const auto setup = counting.calls;
        auto& s = rig.drv.stream(0);
        std::vector<std::uint8_t> buf(s.period_bytes());
        const Nanos end = clock.now() + kNanosPerSecond;
        while (clock.now() < end) {
            while (s.writable_bytes() >= buf.size()) s.write(buf);
            rig.drv.wait(kNanosPerSecond);
        }
        std::uint64_t idle = 0;
        for (std::size_t id = 1; id < streams; ++id) idle += counting.calls[id] - setup[id];
        EXPECT_EQ(idle, 0u) << "idle streams were looked at";
        EXPECT_GT(s.periods_completed(), 90u);
        return counting.calls[0] - setup[0];
    };
    const auto alone = backend_calls_for_one_second(1);
    const auto among = backend_calls_for_one_second(256);
    EXPECT_LE(among, alone + alone / 10) << "the playing stream is asked more often among 256";
}

} // namespace
} // namespace vsnd::test

namespace vsnd::test {
namespace {

// Two streams whose messages become audible 40 µs apart: one wake-up completes both, at the later
// instant; the earlier one is late by those 40 µs (at most SoundDevice::kWakeCoalesce), never early.
TEST(BackendInterface, DeadlinesCloseTogetherShareOneWakeUp) {
    SimulatedClock clock;
    ScriptedBackend backend(clock, 1.0, 1 << 20);
    BackendRig rig(clock, backend, device::Topology::standard(2, 0));
    ASSERT_TRUE(rig.drv.probe());
    const driver::PcmConfig cfg{wire::PcmFormat::S16, 48000, 2, 480, 4, 0};
    std::vector<std::uint8_t> buf(480 * 4);
    for (std::uint32_t id : {0u, 1u}) {
        auto& s = rig.drv.stream(id);
        ASSERT_TRUE(s.set_params(cfg));
        ASSERT_TRUE(s.prepare());
        ASSERT_EQ(s.write(buf), buf.size());
    }
    const Nanos t0 = clock.now();
    ASSERT_TRUE(rig.drv.stream(0).start());
    clock.advance_to(t0 + 40'000);
    ASSERT_TRUE(rig.drv.stream(1).start());
    const Nanos start1 = clock.now();
    rig.dev.process();
    // Stream 0's period is audible 10 ms after its start, stream 1's 10 ms after its own.
    const auto next = rig.dev.next_deadline();
    ASSERT_TRUE(next);
    EXPECT_EQ(*next, start1 + 10'000'000) << "one wake-up, at the later of the two instants";
    EXPECT_LE(*next - (t0 + 10'000'000), device::SoundDevice::kWakeCoalesce);
    clock.advance_to(*next);
    rig.dev.process();
    EXPECT_EQ(rig.dev.stats(0).messages_completed, 1u);
    EXPECT_EQ(rig.dev.stats(1).messages_completed, 1u);
}

} // namespace
} // namespace vsnd::test

namespace vsnd::test {
namespace {

// Kicks on the tx queue go off only while the device has copied-ahead work of its own: a guest
// with a ring of just two periods (nothing left to copy once both are in the card) keeps kicking,
// and plays without a single underrun (the device's timer up to 200 µs late), with event-idx and
// with flag notifications.
TEST(BackendInterface, TwoPeriodRingsNeverRunDry) {
    for (bool event_idx : {true, false}) {
        SimulatedClock clock;
        backends::SimulatedCard card(clock, backends::CardModel{});
        transport::LoopbackLayout layout;
        layout.event_idx = event_idx;
        BackendRig rig(clock, card, device::Topology::standard(1, 0), layout);
        rig.link.set_device_lateness(200'000); // a real timer fires late
        ASSERT_TRUE(rig.drv.probe());
        auto& s = rig.drv.stream(0);
        ASSERT_TRUE(s.set_params({wire::PcmFormat::S16, 48000, 2, 480, 2, 0}));
        ASSERT_TRUE(s.prepare());
        std::vector<std::uint8_t> buf(s.period_bytes());
        while (s.writable_bytes() >= buf.size()) s.write(buf);
        ASSERT_TRUE(s.start());
        const Nanos end = clock.now() + kNanosPerSecond;
        while (clock.now() < end) {
            while (s.writable_bytes() >= buf.size()) s.write(buf);
            ASSERT_TRUE(rig.drv.wait(kNanosPerSecond));
        }
        EXPECT_EQ(rig.dev.stats(0).xruns, 0u) << "event_idx " << event_idx;
        EXPECT_GE(s.periods_completed(), 99u);
    }
}

// A device start leaves nothing behind in the rings' notification flags: after a run with kicks
// off (VRING_USED_F_NO_NOTIFY, no event-idx), a reset and a new start ask for kicks again.
TEST(BackendInterface, ANewDeviceStartAsksForKicksAgain) {
    SimulatedClock clock;
    backends::SimulatedCard card(clock, backends::CardModel{});
    transport::LoopbackLayout layout;
    layout.event_idx = false;
    BackendRig rig(clock, card, device::Topology::standard(1, 0), layout);
    ASSERT_TRUE(rig.drv.probe());
    auto& s = rig.drv.stream(0);
    ASSERT_TRUE(s.set_params({wire::PcmFormat::S16, 48000, 2, 480, 4, 0}));
    ASSERT_TRUE(s.prepare());
    std::vector<std::uint8_t> buf(s.period_bytes());
    while (s.writable_bytes() >= buf.size()) s.write(buf);
    ASSERT_TRUE(s.start());
    auto tx_flags = [&] {
        std::uint16_t f;
        std::memcpy(&f, rig.t.driver_rings(2).used, 2);
        return f;
    };
    for (int i = 0; i < 20; ++i) {
        while (s.writable_bytes() >= buf.size()) s.write(buf);
        ASSERT_TRUE(rig.drv.wait(kNanosPerSecond));
    }
    ASSERT_EQ(tx_flags(), virtq::VRING_USED_F_NO_NOTIFY) << "kicks are off while it plays";
    rig.dev.reset();
    transport::LoopbackDeviceEnd restarted(rig.t, rig.dev);
    EXPECT_EQ(tx_flags(), 0) << "a new start must ask for kicks";
}

} // namespace
} // namespace vsnd::test
