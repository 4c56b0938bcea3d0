// The device model's control queue: every request, its error statuses, and the PCM state
// machine, through real rings with hand-made messages.
#include "../support/backend_rig.hpp"
#include "../support/raw_rig.hpp"

#include "vsnd/audio/test_signal.hpp"
#include "vsnd/backends/simulated_card.hpp"
#include "vsnd/device/pcm_state.hpp"
#include "vsnd/driver/sound_driver.hpp"

namespace vsnd::test {
namespace {

using wire::Code;
using wire::Status;
using device::PcmState;

device::Topology topology_with_jacks() {
    auto t = device::Topology::standard(1, 1);
    t.jacks.push_back({0, 0x01014010, 0x10, true, true});
    t.jacks.push_back({0, 0x01a19020, 0x20, false, false});
    return t;
}

std::vector<std::uint8_t> query(Code c, std::uint32_t start, std::uint32_t count, std::uint32_t size) {
    return RawRig::bytes(wire::QueryInfo{c, start, count, size});
}
std::vector<std::uint8_t> pcm(Code c, std::uint32_t id) { return RawRig::bytes(wire::PcmHeader{c, id}); }
std::vector<std::uint8_t> params(std::uint32_t id, wire::PcmFormat f = wire::PcmFormat::S16, wire::PcmRate r = wire::PcmRate::R48000,
                                 std::uint8_t ch = 2, std::uint32_t period = 1920, std::uint32_t buffer = 7680, std::uint32_t features = 0) {
    return RawRig::bytes(wire::PcmSetParams{id, buffer, period, features, ch, f, r});
}

TEST(Control, JackInfo) {
    RawRig rig(topology_with_jacks());
    std::vector<std::uint8_t> out;
    ASSERT_EQ(rig.control(query(Code::JackInfo, 0, 2, 24), 48, &out), Status::Ok);
    auto j1 = wire::decode<wire::JackInfo>(std::span(out).subspan(24, 24));
    ASSERT_TRUE(j1);
    EXPECT_EQ(j1->hda_reg_defconf, 0x01a19020u);
    EXPECT_FALSE(j1->connected);
    EXPECT_EQ(wire::decode<wire::JackInfo>(std::span(out).first(24))->features, wire::kJackFeatureRemap);
    EXPECT_EQ(rig.control(query(Code::JackInfo, 1, 2, 24), 48), Status::BadMsg) << "past the last jack";
    EXPECT_EQ(rig.control(query(Code::JackInfo, 0xffffffff, 2, 24), 48), Status::BadMsg) << "start + count wraps";
}

TEST(Control, PcmInfoAndLargerItemSize) {
    RawRig rig;
    std::vector<std::uint8_t> out;
    ASSERT_EQ(rig.control(query(Code::PcmInfo, 0, 2, 32), 64, &out), Status::Ok);
    auto in = wire::decode<wire::PcmInfo>(std::span(out).subspan(32, 32));
    ASSERT_TRUE(in);
    EXPECT_EQ(in->direction, wire::Direction::Input);
    EXPECT_EQ(in->channels_max, 8);
    // A driver asking for 40-byte items gets our 32 bytes and zeros after each.
    ASSERT_EQ(rig.control(query(Code::PcmInfo, 1, 1, 40), 40, &out), Status::Ok);
    EXPECT_EQ(wire::decode<wire::PcmInfo>(std::span(out).first(32))->direction, wire::Direction::Input);
    EXPECT_EQ(out[39], 0);
    EXPECT_EQ(rig.control(query(Code::PcmInfo, 0, 1, 16), 16), Status::BadMsg) << "item smaller than the struct";
    EXPECT_EQ(rig.control(query(Code::PcmInfo, 0, 2, 32), 32), Status::BadMsg) << "response buffer too small";
    EXPECT_EQ(rig.control(query(Code::PcmInfo, 2, 1, 32), 32), Status::BadMsg) << "no stream 2";
    ASSERT_EQ(rig.control(query(Code::PcmInfo, 2, 0, 32), 0), Status::Ok) << "empty range at the end is fine";
}

TEST(Control, ChmapInfo) {
    RawRig rig;
    std::vector<std::uint8_t> out;
    ASSERT_EQ(rig.control(query(Code::ChmapInfo, 2, 1, 24), 24, &out), Status::Ok);
    auto c = wire::decode<wire::ChmapInfo>(out);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->channels, 6);
    EXPECT_EQ(c->positions[3], wire::ChannelPosition::LFE);
    EXPECT_EQ(rig.control(query(Code::ChmapInfo, 8, 1, 24), 24), Status::BadMsg);
}

TEST(Control, JackRemap) {
    RawRig rig(topology_with_jacks());
    EXPECT_EQ(rig.control(RawRig::bytes(wire::JackRemap{0, 1, 2})), Status::Ok);
    EXPECT_EQ(rig.control(RawRig::bytes(wire::JackRemap{1, 1, 2})), Status::NotSupp) << "jack 1 is not remappable";
    EXPECT_EQ(rig.control(RawRig::bytes(wire::JackRemap{2, 1, 2})), Status::BadMsg) << "no jack 2";
}

TEST(Control, MalformedRequests) {
    RawRig rig;
    EXPECT_EQ(rig.control({0x01, 0x01}), Status::BadMsg) << "shorter than a header";
    auto p = params(0);
    p.pop_back();
    EXPECT_EQ(rig.control(p), Status::BadMsg) << "truncated SET_PARAMS";
    p = params(0);
    p.push_back(0);
    EXPECT_EQ(rig.control(p), Status::BadMsg) << "oversized SET_PARAMS";
    auto h = pcm(Code::PcmPrepare, 0);
    h.resize(200, 0);
    EXPECT_EQ(rig.control(h), Status::BadMsg) << "oversized PREPARE";
    EXPECT_EQ(rig.control(RawRig::bytes(wire::Header{static_cast<Code>(0x0999)})), Status::NotSupp) << "unknown code";
    EXPECT_EQ(rig.control(RawRig::bytes(wire::Header{Code::CtlInfo})), Status::NotSupp) << "controls not offered";
    p = params(0);
    p[21] = 99; // undefined format code
    EXPECT_EQ(rig.control(p), Status::BadMsg);
    // A request without room for a response is returned with nothing written.
    auto r = rig.send(0, {pcm(Code::PcmStart, 0)}, {});
    EXPECT_TRUE(r.completed);
    EXPECT_EQ(r.used_len, 0u);
    // A response part that is split over descriptors is written as one stream.
    r = rig.send(0, {query(Code::PcmInfo, 0, 1, 32)}, {2, 2, 32});
    ASSERT_TRUE(r.completed);
    EXPECT_EQ(r.used_len, 36u);
    EXPECT_EQ(wire::decode<wire::StatusHeader>(std::span(r.written).first(4))->status, Status::Ok);
}

TEST(Control, SetParamsValidation) {
    RawRig rig;
    using F = wire::PcmFormat;
    using R = wire::PcmRate;
    EXPECT_EQ(rig.control(params(0, F::U8)), Status::NotSupp) << "format not offered";
    EXPECT_EQ(rig.control(params(0, F::S16, R::R384000)), Status::NotSupp) << "rate not offered";
    EXPECT_EQ(rig.control(params(0, F::S16, R::R48000, 9)), Status::NotSupp) << "too many channels";
    EXPECT_EQ(rig.control(params(0, F::S16, R::R48000, 0)), Status::NotSupp) << "no channels";
    EXPECT_EQ(rig.control(params(0, F::S16, R::R48000, 2, 1920, 7680, wire::bit(wire::PcmFeature::ShmemHost))),
              Status::NotSupp) << "shared memory";
    EXPECT_EQ(rig.control(params(0, F::S16, R::R48000, 2, 1920, 7000)), Status::BadMsg) << "buffer % period";
    EXPECT_EQ(rig.control(params(0, F::S16, R::R48000, 2, 1922, 7688)), Status::BadMsg) << "period not whole frames";
    EXPECT_EQ(rig.control(params(0, F::S16, R::R48000, 2, 0, 0)), Status::BadMsg) << "empty";
    EXPECT_EQ(rig.control(params(2)), Status::BadMsg) << "no stream 2";
    EXPECT_EQ(rig.control(params(0, F::S16, R::R48000, 2, 1920, 7680, wire::bit(wire::PcmFeature::EvtXruns))), Status::Ok);
}

// The full table: every command from every state, checked against the spec (§5.14.6.6.1) plus
// the two tolerances Linux needs.
TEST(StateMachine, TransitionTable) {
    using S = PcmState;
    const Code cmds[] = {Code::PcmSetParams, Code::PcmPrepare, Code::PcmStart, Code::PcmStop, Code::PcmRelease};
    struct Row { S from; std::optional<S> to[5]; };
    const Row table[] = {
        {S::Initial,   {S::ParamsSet, {},          {},         {},         S::Initial}},
        {S::ParamsSet, {S::ParamsSet, S::Prepared, {},         {},         S::ParamsSet}},
        {S::Prepared,  {S::ParamsSet, S::Prepared, S::Started, {},         S::Released}},
        {S::Started,   {{},           {},          {},         S::Stopped, {}}},
        {S::Stopped,   {{},           {},          S::Started, {},         S::Released}},
        {S::Released,  {S::ParamsSet, S::Prepared, {},         {},         S::Released}},
    };
    for (const auto& row : table)
        for (int i = 0; i < 5; ++i)
            EXPECT_EQ(device::transition(row.from, cmds[i]), row.to[i])
                << wire::name(cmds[i]) << " from " << device::name(row.from);
    EXPECT_FALSE(device::transition(S::Prepared, Code::PcmInfo));
}

TEST(StateMachine, DeviceFollowsTheTable) {
    RawRig rig;
    EXPECT_EQ(rig.control(pcm(Code::PcmPrepare, 0)), Status::BadMsg) << "PREPARE before SET_PARAMS";
    EXPECT_EQ(rig.control(pcm(Code::PcmStart, 0)), Status::BadMsg);
    EXPECT_EQ(rig.control(pcm(Code::PcmRelease, 0)), Status::Ok) << "nothing to release: tolerated";
    ASSERT_EQ(rig.control(params(0)), Status::Ok);
    EXPECT_EQ(rig.control(pcm(Code::PcmStop, 0)), Status::BadMsg);
    ASSERT_EQ(rig.control(pcm(Code::PcmPrepare, 0)), Status::Ok);
    ASSERT_EQ(rig.control(pcm(Code::PcmPrepare, 0)), Status::Ok) << "PREPARE again";
    ASSERT_EQ(rig.control(pcm(Code::PcmStart, 0)), Status::Ok);
    EXPECT_EQ(rig.device.stats(0).state, PcmState::Started);
    EXPECT_EQ(rig.control(params(0)), Status::BadMsg) << "SET_PARAMS while running";
    EXPECT_EQ(rig.control(pcm(Code::PcmRelease, 0)), Status::BadMsg) << "RELEASE while running";
    EXPECT_EQ(rig.control(pcm(Code::PcmStart, 0)), Status::BadMsg);
    ASSERT_EQ(rig.control(pcm(Code::PcmStop, 0)), Status::Ok);
    ASSERT_EQ(rig.control(pcm(Code::PcmStart, 0)), Status::Ok) << "resume after pause";
    ASSERT_EQ(rig.control(pcm(Code::PcmStop, 0)), Status::Ok);
    ASSERT_EQ(rig.control(pcm(Code::PcmRelease, 0)), Status::Ok);
    ASSERT_EQ(rig.control(pcm(Code::PcmRelease, 0)), Status::Ok) << "sync_stop's second RELEASE";
    ASSERT_EQ(rig.control(pcm(Code::PcmPrepare, 0)), Status::Ok) << "PREPARE after RELEASE keeps the parameters";
    EXPECT_EQ(rig.control(pcm(Code::PcmStart, 9)), Status::BadMsg) << "no stream 9";
}

TEST(StateMachine, SetParamsAgainAfterDeviceReset) {
    RawRig rig;
    ASSERT_EQ(rig.control(params(0)), Status::Ok);
    ASSERT_EQ(rig.control(pcm(Code::PcmPrepare, 0)), Status::Ok);
    ASSERT_EQ(rig.control(pcm(Code::PcmStart, 0)), Status::Ok);
    // Suspend/resume: the guest resets the device, then sends SET_PARAMS and PREPARE again.
    rig.device.reset();
    EXPECT_EQ(rig.device.stats(0).state, PcmState::Initial);
    rig.device.attach({&rig.link.device_end().queue(0), &rig.link.device_end().queue(1),
                       &rig.link.device_end().queue(2), &rig.link.device_end().queue(3)},
                      [&](wire::QueueIndex q) { rig.transport.call(static_cast<unsigned>(q)).signal(); });
    ASSERT_EQ(rig.control(params(0)), Status::Ok);
    ASSERT_EQ(rig.control(pcm(Code::PcmPrepare, 0)), Status::Ok);
}

// ---- I/O messages ----------------------------------------------------------------------------

struct Io : ::testing::Test {
    RawRig rig;
    void SetUp() override {
        ASSERT_EQ(rig.control(params(0)), Status::Ok);
        ASSERT_EQ(rig.control(params(1)), Status::Ok);
    }
    wire::PcmStatus status_of(const RawReply& r) {
        return *wire::decode<wire::PcmStatus>(std::span(r.written).last(8));
    }
    std::vector<std::uint8_t> xfer(std::uint32_t id) { return RawRig::bytes(wire::PcmXfer{id}); }
};

TEST_F(Io, TxBeforePrepareIsIoErr) {
    auto r = rig.send(2, {xfer(0), std::vector<std::uint8_t>(1920)}, {8});
    ASSERT_TRUE(r.completed);
    EXPECT_EQ(r.used_len, 8u);
    EXPECT_EQ(status_of(r).status, Status::IoErr);
}

TEST_F(Io, TxErrors) {
    ASSERT_EQ(rig.control(pcm(Code::PcmPrepare, 0)), Status::Ok);
    ASSERT_EQ(rig.control(pcm(Code::PcmPrepare, 1)), Status::Ok);
    EXPECT_EQ(status_of(rig.send(2, {xfer(1), std::vector<std::uint8_t>(1920)}, {8})).status, Status::IoErr)
        << "tx to an input stream";
    EXPECT_EQ(status_of(rig.send(2, {xfer(7), std::vector<std::uint8_t>(1920)}, {8})).status, Status::IoErr)
        << "tx to no stream";
    EXPECT_EQ(status_of(rig.send(2, {xfer(0), std::vector<std::uint8_t>(1921)}, {8})).status, Status::IoErr)
        << "partial frame";
    EXPECT_EQ(status_of(rig.send(2, {{0, 0}}, {8})).status, Status::IoErr) << "header cut short";
    // Status must be the last 8 writable bytes, even with a larger writable area.
    auto r = rig.send(2, {xfer(1)}, {16});
    EXPECT_EQ(status_of(r).status, Status::IoErr);
    EXPECT_EQ(r.written[0], 0xee) << "nothing written before the status";
    // No room for a status at all: returned with nothing written.
    r = rig.send(2, {xfer(0), std::vector<std::uint8_t>(4)}, {4});
    EXPECT_TRUE(r.completed);
    EXPECT_EQ(r.used_len, 0u);
    EXPECT_EQ(rig.device.stats(0).io_errors, 1u);
}

// Every log line the guest can drive is rate-limited: 300 bad messages in a moment give the
// burst and one line saying how many were left out, not 300 lines.
TEST_F(Io, GuestDrivenLogLinesAreRateLimited) {
    rig.log.clear();
    const Nanos t0 = rig.clock.now();
    for (int i = 0; i < 300; ++i)
        ASSERT_EQ(status_of(rig.send(2, {xfer(7), std::vector<std::uint8_t>(1920)}, {8})).status, Status::IoErr);
    const auto elapsed_ms = (rig.clock.now() - t0) / 1'000'000;
    const std::size_t allowed = 20 + static_cast<std::size_t>(elapsed_ms / 100) + 1;
    EXPECT_LE(rig.log.size(), allowed) << elapsed_ms << " ms simulated";
    EXPECT_GE(rig.device.log_lines_suppressed(), 300 - allowed);
    // Later, the next line says what was left out.
    rig.clock.advance_to(rig.clock.now() + kNanosPerSecond);
    rig.send(2, {xfer(7), std::vector<std::uint8_t>(1920)}, {8});
    ASSERT_GE(rig.log.size(), 2u);
    EXPECT_NE(rig.log[rig.log.size() - 2].find("lines left out"), std::string::npos) << rig.log[rig.log.size() - 2];
}

// A guest that cuts a period into one-byte descriptors: the backend still sees few writes.
TEST_F(Io, TinyDescriptorsAreGatheredIntoFewBackendWrites) {
    ASSERT_EQ(rig.control(pcm(Code::PcmPrepare, 0)), Status::Ok);
    std::vector<std::vector<std::uint8_t>> pieces{xfer(0)};
    for (int i = 0; i < 48; ++i) pieces.push_back({static_cast<std::uint8_t>(i), static_cast<std::uint8_t>(i + 1)});
    const auto rec = rig.card.record(0);
    ASSERT_TRUE(rec);
    const auto before = rec->handovers;
    auto& q = rig.link.queue(2);
    std::vector<virtq::DriverBuffer> bufs;
    std::size_t at = 0;
    for (const auto& p : pieces) {
        std::memcpy(rig.mem.host + at, p.data(), p.size());
        bufs.push_back({rig.mem.gpa + at, static_cast<std::uint32_t>(p.size()), false});
        at += 64;
    }
    bufs.push_back({rig.mem.gpa + at, 8, true});
    ASSERT_TRUE(q.add(bufs, 1));
    if (q.publish()) rig.link.kick(2);
    rig.link.run_until(rig.clock.now() + 1'000'000);
    EXPECT_EQ(rec->handovers - before, 1u) << "48 two-byte pieces, one write";
}

TEST_F(Io, RxFilledCompletelyWithStatusLast) {
    ASSERT_EQ(rig.control(pcm(Code::PcmPrepare, 1)), Status::Ok);
    ASSERT_EQ(rig.control(pcm(Code::PcmStart, 1)), Status::Ok);
    // Payload split in odd pieces; 1920 bytes + status.
    auto r = rig.send(3, {xfer(1)}, {1000, 920, 8});
    ASSERT_TRUE(r.completed);
    EXPECT_EQ(r.used_len, 1928u);
    EXPECT_EQ(status_of(r).status, Status::Ok);
    audio::TestSignal sig(wire::PcmFormat::S16, 2);
    EXPECT_FALSE(sig.compare(std::span(r.written).first(1920), 0));
    EXPECT_EQ(status_of(rig.send(3, {xfer(0)}, {1928})).status, Status::IoErr) << "rx on an output stream";
    EXPECT_EQ(status_of(rig.send(3, {xfer(1), {1}}, {1928})).status, Status::IoErr) << "extra readable bytes";
    EXPECT_EQ(status_of(rig.send(3, {xfer(1)}, {10})).status, Status::IoErr) << "smaller than a frame";
}

TEST_F(Io, RxFlushedPartiallyOnRelease) {
    ASSERT_EQ(rig.control(pcm(Code::PcmPrepare, 1)), Status::Ok);
    // Queue a buffer, never start: RELEASE completes it with nothing captured, before replying.
    auto& q = rig.link.queue(3);
    std::memcpy(rig.mem.host + 0x8000, xfer(1).data(), 4);
    virtq::DriverBuffer b[] = {{rig.mem.gpa + 0x8000, 4, false}, {rig.mem.gpa + 0x9000, 1928, true}};
    ASSERT_TRUE(q.add(b, 9));
    if (q.publish()) rig.link.kick(3);
    rig.link.run_until(rig.clock.now() + 1'000'000);
    EXPECT_FALSE(q.has_used());
    ASSERT_EQ(rig.control(pcm(Code::PcmRelease, 1)), Status::Ok);
    auto u = q.reap();
    ASSERT_TRUE(u && *u) << "completed before the RELEASE answer was seen";
    EXPECT_EQ((*u)->len, 8u);
}

TEST_F(Io, MalformedChainIsReturnedAndQueueKeepsWorking) {
    ASSERT_EQ(rig.control(pcm(Code::PcmPrepare, 0)), Status::Ok);
    auto& q = rig.link.queue(2);
    virtq::DriverBuffer bad[] = {{0x7000'0000'0000, 4, false}, {rig.mem.gpa, 8, true}};
    ASSERT_TRUE(q.add(bad, 1));
    if (q.publish()) rig.link.kick(2);
    rig.link.wait_interrupt(1'000'000);
    auto u = q.reap();
    ASSERT_TRUE(u && *u);
    EXPECT_EQ((*u)->len, 0u);
    EXPECT_FALSE(rig.log.empty());
    EXPECT_EQ(status_of(rig.send(2, {xfer(1)}, {8})).status, Status::IoErr);
}

// ---- events ------------------------------------------------------------------------------------

TEST(Events, JackAndXrunEvents) {
    RawRig rig(topology_with_jacks(), {0, 480, 0, 0});
    std::vector<std::uint32_t> events_sizes;
    auto& eq = rig.link.queue(1);
    for (unsigned i = 0; i < 4; ++i) {
        virtq::DriverBuffer b{rig.mem.gpa + 0x10000 + 8 * i, 8, true};
        ASSERT_TRUE(eq.add(std::span(&b, 1), i));
    }
    if (eq.publish()) rig.link.kick(1);
    rig.link.run_until(rig.clock.now() + 1000);
    rig.device.set_jack_connected(1, true);
    rig.link.wait_interrupt(1'000'000);
    auto u = eq.reap();
    ASSERT_TRUE(u && *u);
    auto ev = wire::decode<wire::Event>(std::span<const std::uint8_t>(rig.mem.host + 0x10000 + 8 * (*u)->token, 8));
    EXPECT_EQ(ev->type, Code::EvtJackConnected);
    EXPECT_EQ(ev->data, 1u);

    // XRUN: negotiated with SET_PARAMS; play one period and let the card run dry.
    ASSERT_EQ(rig.control(params(0, wire::PcmFormat::S16, wire::PcmRate::R48000, 2, 1920, 7680,
                                 wire::bit(wire::PcmFeature::EvtXruns))), Status::Ok);
    ASSERT_EQ(rig.control(pcm(Code::PcmPrepare, 0)), Status::Ok);
    ASSERT_EQ(rig.control(pcm(Code::PcmStart, 0)), Status::Ok);
    rig.send(2, {RawRig::bytes(wire::PcmXfer{0}), std::vector<std::uint8_t>(1920)}, {8});
    rig.link.run_until(rig.clock.now() + 50'000'000);
    EXPECT_EQ(rig.device.stats(0).xruns, 1u);
    u = eq.reap();
    ASSERT_TRUE(u && *u);
    ev = wire::decode<wire::Event>(std::span<const std::uint8_t>(rig.mem.host + 0x10000 + 8 * (*u)->token, 8));
    EXPECT_EQ(ev->type, Code::EvtPcmXrun);
    EXPECT_EQ(ev->data, 0u);
}

TEST(Events, WrongDirectionEventBufferReturnedUnused) {
    RawRig rig(topology_with_jacks());
    auto& eq = rig.link.queue(1);
    virtq::DriverBuffer b{rig.mem.gpa, 8, false};
    ASSERT_TRUE(eq.add(std::span(&b, 1), 0));
    if (eq.publish()) rig.link.kick(1);
    rig.device.set_jack_connected(1, true);
    rig.link.wait_interrupt(1'000'000);
    auto u = eq.reap();
    ASSERT_TRUE(u && *u);
    EXPECT_EQ((*u)->len, 0u);
}

} // namespace
} // namespace vsnd::test

namespace vsnd::test {
namespace {

// An audio device that has gone away (unplugged, driver error): its stream reports failed().
class FailedStream final : public device::BackendStream {
public:
    void start() override {}
    void stop() override {}
    std::size_t writable_bytes() override { return 1 << 20; }
    void write(std::span<const std::uint8_t>) override {}
    std::size_t readable_bytes() override { return 0; }
    void read(std::span<std::uint8_t>) override {}
    device::Position position() override { return {}; }
    std::optional<Nanos> next_wakeup() override { return std::nullopt; }
    std::uint64_t xruns() const override { return 0; }
    bool failed() const override { return true; }
};

class FailedBackend final : public device::AudioBackend {
public:
    std::string name() const override { return "failed"; }
    Expected<std::unique_ptr<device::BackendStream>, std::string> open(std::uint32_t, const device::StreamFormat&) override {
        return std::unique_ptr<device::BackendStream>(std::make_unique<FailedStream>());
    }
};

// A card that another program may grab between two opens.
class GrabbableBackend final : public device::AudioBackend {
public:
    explicit GrabbableBackend(device::AudioBackend& card) : card_(card) {}
    std::string name() const override { return "grabbable"; }
    Expected<std::unique_ptr<device::BackendStream>, std::string> open(std::uint32_t id, const device::StreamFormat& f) override {
        if (grabbed) return Unexpected{std::string("device or resource busy")};
        return card_.open(id, f);
    }
    bool grabbed = false;

private:
    device::AudioBackend& card_;
};

// PREPARE again from Prepared closes the backend stream; when the re-open fails (the card grabbed
// by another program, unplugged, the disk full), the stream is back at "parameters set": START is
// BAD_MSG, not a call on a missing backend stream (the crash this once was), and once the card is
// free the next PREPARE plays.
TEST(FailedDevice, FailedReopenLeavesParamsSetAndRecovers) {
    SimulatedClock clock;
    backends::SimulatedCard card(clock, backends::CardModel{});
    GrabbableBackend backend(card);
    BackendRig rig(clock, backend, device::Topology::standard(1, 0));
    auto& dev = rig.dev;
    auto& drv = rig.drv;
    ASSERT_TRUE(drv.probe());
    auto& s = drv.stream(0);
    ASSERT_TRUE(s.set_params({wire::PcmFormat::S16, 48000, 2, 480, 4, 0}));
    ASSERT_TRUE(s.prepare());
    backend.grabbed = true;
    const auto again = s.prepare();
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().status, wire::Status::IoErr);
    EXPECT_EQ(dev.stats(0).state, device::PcmState::ParamsSet);
    const auto start = wire::encode(wire::PcmHeader{wire::Code::PcmStart, 0});
    const auto r = drv.control(start);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().status, wire::Status::BadMsg);
    backend.grabbed = false;
    ASSERT_TRUE(s.prepare());
    std::vector<std::uint8_t> buf(s.period_bytes());
    ASSERT_EQ(s.write(buf), buf.size());
    ASSERT_TRUE(s.start());
    while (s.in_flight()) ASSERT_TRUE(drv.wait(kNanosPerSecond));
    EXPECT_EQ(s.io_errors(), 0u);
    ASSERT_TRUE(card.record(0));
    EXPECT_EQ(card.record(0)->frames, 480u);
}

TEST(FailedDevice, AnswersIoErrAndKeepsServing) {
    SimulatedClock clock;
    FailedBackend backend;
    BackendRig rig(clock, backend, device::Topology::standard(1, 0));
    auto& dev = rig.dev;
    auto& drv = rig.drv;
    ASSERT_TRUE(drv.probe());
    auto& s = drv.stream(0);
    ASSERT_TRUE(s.set_params({wire::PcmFormat::S16, 48000, 2, 480, 4, 0}));
    ASSERT_TRUE(s.prepare());
    std::vector<std::uint8_t> buf(s.period_bytes());
    ASSERT_EQ(s.write(buf), buf.size());
    ASSERT_TRUE(drv.wait(kNanosPerSecond));
    EXPECT_EQ(s.io_errors(), 1u);
    EXPECT_EQ(dev.stats(0).io_errors, 1u);
    ASSERT_TRUE(s.release()) << "the device goes on answering control requests";
}

} // namespace
} // namespace vsnd::test
