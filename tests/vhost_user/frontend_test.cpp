// The vhost-user front-end with the driver model against an in-process backend server (WAV
// backend, real time): playback bit-exact into the WAV file, capture bit-exact from one, a front-end
// that vanishes mid-stream followed by a new one, and hostile front-ends the server survives.
#include "support.hpp"
#include "../support/frontend_play.hpp"

#include "vsnd/driver/sound_driver.hpp"
#include "vsnd/vhost_user/frontend.hpp"

#include <gtest/gtest.h>

#include <random>
#include <unistd.h>
#include <optional>
#include <sys/stat.h>

namespace vsnd::test {
namespace {

using namespace vsnd::vhost_user;

constexpr auto kFmt = kPlayFormat;

std::vector<std::uint8_t> read_wav(const std::filesystem::path& p) {
    auto r = audio::WavFileReader::open(p);
    if (!r) {
        ADD_FAILURE() << r.error();
        return {};
    }
    return (*r)->read_all({kFmt, 48000, 2});
}

// After a hostile client: a proper front-end still gets a working device.
::testing::AssertionResult a_new_front_end_plays(ServerRig& rig, std::uint64_t frames = 4800) {
    return front_end_plays(rig.socket, frames);
}

TEST(VhostUserFrontend, NegotiatesLikeQemu) {
    ServerRig rig;
    auto fe = Frontend::connect(rig.socket);
    ASSERT_TRUE(fe) << fe.error();
    EXPECT_EQ((*fe)->backend_features(), 0x170000000u);
    EXPECT_EQ((*fe)->protocol_features(), 0x209u);
    EXPECT_EQ((*fe)->device_features(), 0x170000000u);
    const auto cfg = wire::decode_config((*fe)->config());
    ASSERT_TRUE(cfg);
    EXPECT_EQ(cfg->streams, 2u);
    EXPECT_TRUE(eventually([&] { return rig.on_server([&] { return rig.device.attached(); }); }));
    auto bases = (*fe)->stop();
    ASSERT_TRUE(bases) << bases.error();
    EXPECT_EQ((*bases)[0], 0u);
    EXPECT_FALSE(rig.on_server([&] { return rig.device.attached(); }));
}

TEST(VhostUserFrontend, PlaysOneSecondBitExactAndCaptures) {
    ServerRig rig;
    rig.write_capture(48000);
    MonotonicClock clock;
    auto fe = Frontend::connect(rig.socket);
    ASSERT_TRUE(fe) << fe.error();
    driver::SoundDriver drv(**fe, clock);
    ASSERT_TRUE(drv.probe());
    ASSERT_EQ(drv.stream_count(), 2u);

    const Nanos t0 = clock.now();
    ASSERT_TRUE(play(drv, 48000));
    const double took = static_cast<double>(clock.now() - t0) / 1e9;
    EXPECT_GT(took, 0.95) << "playback must be paced in real time";
    EXPECT_LT(took, 2.0);

    // Capture 0.5 s from the WAV file. A longer ring than for playback: frames are lost (an
    // overrun, not a transport fault) if this thread is descheduled for a whole ring.
    auto& in = drv.stream(1);
    ASSERT_TRUE(in.set_params({kFmt, 48000, 2, 1024, 8, 0}));
    ASSERT_TRUE(in.prepare());
    ASSERT_TRUE(in.start());
    std::vector<std::uint8_t> got, buf(in.period_bytes());
    while (got.size() < 24000 * 4) {
        if (in.readable_bytes() == 0) {
            ASSERT_TRUE(drv.wait(kNanosPerSecond)) << "capture stalled";
            continue;
        }
        const auto n = in.read(buf);
        got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    }
    ASSERT_TRUE(in.stop());
    ASSERT_TRUE(in.release());
    EXPECT_EQ(drv.device_faults(), 0u);
    EXPECT_EQ(rig.on_server([&] { return rig.device.stats(1).xruns; }), 0u);
    const auto bad_capture = audio::TestSignal(kFmt, 2).compare(got, 0);
    EXPECT_FALSE(bad_capture) << "capture: first wrong frame " << *bad_capture;

    ASSERT_TRUE((*fe)->stop());
    fe->reset();
    ASSERT_TRUE(eventually([&] { return rig.server.connections_closed() == 1; }));

    rig.backend.flush();
    const auto played = read_wav(rig.backend.output_path(0));
    EXPECT_EQ(played.size(), 48000u * 4) << "nothing lost at stop (completion when played)";
    const auto bad = audio::TestSignal(kFmt, 2).compare(played, 0);
    EXPECT_FALSE(bad) << "first wrong frame " << *bad;
    EXPECT_EQ(rig.log_sink->errors(), 0u) << rig.log_sink->dump();
}

TEST(VhostUserFrontend, FrontEndVanishingMidStreamThenANewOnePlays) {
    ServerRig rig;
    MonotonicClock clock;
    {
        auto fe = Frontend::connect(rig.socket);
        ASSERT_TRUE(fe) << fe.error();
        driver::SoundDriver drv(**fe, clock);
        ASSERT_TRUE(drv.probe());
        ASSERT_TRUE(play(drv, 48000, 14400)); // stop writing after 0.3 s; then the "VM" dies
        EXPECT_TRUE(rig.on_server([&] { return rig.device.attached(); }));
    }
    ASSERT_TRUE(eventually([&] { return rig.server.connections_closed() == 1; }));
    EXPECT_FALSE(rig.on_server([&] { return rig.device.attached(); }));
    // What the first one got played is a prefix of the signal.
    rig.backend.flush();
    const auto partial = read_wav(rig.backend.output_path(0));
    EXPECT_LE(partial.size(), 14400u * 4);
    EXPECT_FALSE(audio::TestSignal(kFmt, 2).compare(partial, 0));
    std::filesystem::remove(rig.backend.output_path(0));

    auto fe = Frontend::connect(rig.socket);
    ASSERT_TRUE(fe) << fe.error();
    driver::SoundDriver drv(**fe, clock);
    ASSERT_TRUE(drv.probe());
    ASSERT_TRUE(play(drv, 24000));
    ASSERT_TRUE((*fe)->stop());
    fe->reset();
    ASSERT_TRUE(eventually([&] { return rig.server.connections_closed() == 2; }));
    rig.backend.flush();
    const auto played = read_wav(rig.backend.output_path(0));
    EXPECT_EQ(played.size(), 24000u * 4);
    EXPECT_FALSE(audio::TestSignal(kFmt, 2).compare(played, 0));
    EXPECT_EQ(rig.server.connections_accepted(), 2u);
}

TEST(VhostUserFrontend, ServerSurvivesHostileFrontEnds) {
    ServerRig rig;
    std::mt19937 rng(42);
    // 1: random garbage.
    {
        auto p = RawPeer::connect(rig.socket);
        std::vector<std::uint8_t> junk(4096);
        for (auto& b : junk) b = static_cast<std::uint8_t>(rng());
        p.send_bytes(junk);
        EXPECT_TRUE(p.closed_by_peer());
    }
    // 2: a valid handshake, then a ring outside memory.
    {
        auto p = RawPeer::connect(rig.socket);
        ASSERT_TRUE(p.send(Request::GetFeatures, 1, {}));
        EXPECT_EQ(p.read(20).size(), 20u);
        ASSERT_TRUE(p.send(Request::SetVringNum, 1, encode(VringState{0, 64})));
        ASSERT_TRUE(p.send(Request::SetVringAddr, 1, encode(VringAddr{0, 0, 0x1000, 0x2000, 0x3000, 0})));
        EXPECT_TRUE(p.closed_by_peer());
    }
    // 3: fds with a request that takes none, then a peer that never reads its replies.
    {
        auto p = RawPeer::connect(rig.socket);
        auto fd = make_eventfd();
        ASSERT_TRUE(p.send(Request::GetQueueNum, 1, {}, {fd.get(), fd.get(), fd.get()}));
        EXPECT_TRUE(p.closed_by_peer());
    }
    {
        auto p = RawPeer::connect(rig.socket);
        const auto m = encode_message(Request::GetFeatures, 1, {});
        std::vector<std::uint8_t> many;
        for (int i = 0; i < 20000; ++i) many.insert(many.end(), m.begin(), m.end());
        std::thread writer([&] { p.send_bytes(many); }); // blocks once both directions fill up
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        ::shutdown(p.fd(), SHUT_RDWR);
        writer.join();
    }
    // 4: a half message, then silence and disconnect.
    {
        auto p = RawPeer::connect(rig.socket);
        const auto m = encode_message(Request::SetFeatures, 1, encode_u64(0x100000000));
        p.send_bytes(std::span(m).first(10));
    }
    ASSERT_TRUE(eventually([&] { return rig.server.connections_closed() == 5; })) << rig.log_sink->dump();
    EXPECT_GE(rig.log_sink->count("closed: malformed message", spdlog::level::err), 2u) << rig.log_sink->dump();

    EXPECT_TRUE(a_new_front_end_plays(rig, 9600));
    EXPECT_EQ(rig.server.connections_accepted(), 6u);
}

// The socket is owner-only whatever the umask, and a client that connects and says nothing (or
// stops mid-message) is disconnected after the stall timeout, so the next front-end is served.
TEST(VhostUserFrontend, SocketIsPrivateAndASilentClientCannotBlockTheNext) {
    const mode_t old_umask = ::umask(0);
    vhost_user::ServerOptions options;
    options.stall_timeout = std::chrono::milliseconds(300);
    ServerRig rig(device::Topology::standard(1, 1), device::CompletionPolicy::Played, options);
    ::umask(old_umask);
    struct stat st {};
    ASSERT_EQ(::stat(rig.socket.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << "umask 000 must not open the socket to other users";

    auto silent = RawPeer::connect(rig.socket); // connects, never sends
    {
        MonotonicClock clock;
        const Nanos t0 = clock.now();
        EXPECT_TRUE(silent.closed_by_peer());
        EXPECT_GE(clock.now() - t0, 250'000'000);
        EXPECT_LT(clock.now() - t0, 3 * kNanosPerSecond);
    }
    auto stuck = RawPeer::connect(rig.socket);
    ASSERT_TRUE(stuck.send(Request::SetOwner, 1, {}));
    const auto m = encode_message(Request::SetFeatures, 1, encode_u64(0x100000000));
    stuck.send_bytes(std::span(m).first(10));
    EXPECT_TRUE(stuck.closed_by_peer());
    ASSERT_TRUE(eventually([&] { return rig.server.connections_closed() == 2; }));
    EXPECT_EQ(rig.log_sink->count("no SET_OWNER within", spdlog::level::err), 1u) << rig.log_sink->dump();
    EXPECT_EQ(rig.log_sink->count("in the middle of a message", spdlog::level::err), 1u) << rig.log_sink->dump();

    EXPECT_TRUE(a_new_front_end_plays(rig));
}

// A front-end that shrinks the file behind guest memory after SET_MEM_TABLE: the back-end's next
// ring access faults (SIGBUS), gets zero pages instead of dying, and closes that connection; the
// next front-end plays.
TEST(VhostUserFrontend, ShrunkGuestMemoryEndsTheConnectionNotTheDaemon) {
    ServerRig rig;
    MonotonicClock clock;
    {
        auto fe = Frontend::connect(rig.socket);
        ASSERT_TRUE(fe) << fe.error();
        driver::SoundDriver drv(**fe, clock);
        ASSERT_TRUE(drv.probe());
        ASSERT_EQ(::ftruncate((*fe)->memory_fd(), 0), 0);
        (*fe)->kick(0); // only the eventfd: this side must not touch the memory now either
        ASSERT_TRUE(eventually([&] { return rig.server.connections_closed() == 1; })) << rig.log_sink->dump();
        EXPECT_EQ(rig.log_sink->count("guest memory vanished", spdlog::level::err), 1u) << rig.log_sink->dump();
    }
    EXPECT_TRUE(a_new_front_end_plays(rig));
}

TEST(VhostUserFrontend, FrontEndNoticesTheBackendGoing) {
    ServerRig rig;
    MonotonicClock clock;
    auto fe = Frontend::connect(rig.socket);
    ASSERT_TRUE(fe) << fe.error();
    driver::SoundDriver drv(**fe, clock);
    ASSERT_TRUE(drv.probe());
    rig.stop();
    for (int i = 0; i < 10 && (*fe)->wait_interrupt(kNanosPerSecond);) ++i; // interrupts still pending
    EXPECT_TRUE((*fe)->backend_gone());
    // A blocking request to a device that has gone fails at once, without spinning out the 1 s
    // message timeout.
    const Nanos t0 = clock.now();
    const auto r = drv.stream(0).set_params({wire::PcmFormat::S16, 48000, 2, 480, 4, 0});
    EXPECT_FALSE(r);
    if (!r) {
        EXPECT_NE(r.error().message.find("the device has gone"), std::string::npos) << r.error().message;
    }
    EXPECT_LT(clock.now() - t0, 100'000'000);
    EXPECT_FALSE(drv.wait(kNanosPerSecond));
    EXPECT_LT(clock.now() - t0, 200'000'000) << "wait() does not wait for a device that has gone";
    EXPECT_FALSE((*fe)->stop());
}

TEST(VhostUserFrontend, ConnectFailsCleanlyWithoutABackend) {
    auto fe = Frontend::connect("/nonexistent/vsnd.sock");
    ASSERT_FALSE(fe);
    EXPECT_NE(fe.error().find("connect"), std::string::npos);
}

} // namespace
} // namespace vsnd::test
