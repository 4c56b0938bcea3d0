// Host-side tests of the ALSA backend that need no sound card: the lock-free ring and seqlock
// under two threads, the buffer geometry, error reporting, and a full open/start/stop/close
// cycle on alsa-lib's "null" PCM (which takes every frame at once), also under ASan.
#include "vsnd/backends/alsa_backend.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>

#include <numeric>
#include <thread>
#include <vector>

using namespace vsnd;
using backends::AlsaBackend;
using backends::AlsaOptions;
using backends::alsa_detail::PositionSnapshot;
using backends::alsa_detail::SeqlockPosition;
using backends::alsa_detail::SpscByteRing;

namespace {

device::StreamFormat format(wire::Direction dir, std::uint32_t period_frames, std::uint32_t periods,
                            wire::PcmFormat f = wire::PcmFormat::S16, std::uint32_t rate = 48000, std::uint8_t ch = 2) {
    device::StreamFormat fmt{dir, f, rate, ch, 0, 0};
    fmt.period_bytes = period_frames * fmt.frame_bytes();
    fmt.buffer_bytes = fmt.period_bytes * periods;
    return fmt;
}

// The log is called from audio threads too (a stream's last line at close).
std::mutex g_log_mutex;
AlsaOptions quiet(std::vector<std::string>* logs = nullptr) {
    AlsaOptions o;
    o.log = [logs](const std::string& m) {
        std::lock_guard lock(g_log_mutex);
        if (logs) logs->push_back(m);
    };
    return o;
}

} // namespace

TEST(SpscByteRing, WrapsAndKeepsOrderAcrossThreads) {
    SpscByteRing ring(1000); // not a power of two, on purpose
    constexpr std::uint64_t kTotal = 5'000'000;
    std::thread producer([&] {
        std::vector<std::uint8_t> chunk(313);
        std::uint64_t next = 0;
        while (next < kTotal) {
            const std::size_t n = std::min<std::size_t>({ring.free_bytes(), chunk.size(), kTotal - next});
            for (std::size_t i = 0; i < n; ++i) chunk[i] = static_cast<std::uint8_t>((next + i) * 7 + 3);
            ring.push(std::span(chunk).first(n));
            next += n;
            if (n == 0) std::this_thread::yield();
        }
    });
    std::vector<std::uint8_t> out(257);
    std::uint64_t seen = 0, bad = 0;
    while (seen < kTotal) {
        const std::size_t n = std::min(ring.used_bytes(), out.size());
        ring.pop(std::span(out).first(n));
        for (std::size_t i = 0; i < n; ++i) bad += out[i] != static_cast<std::uint8_t>((seen + i) * 7 + 3);
        seen += n;
        if (n == 0) std::this_thread::yield();
    }
    producer.join();
    EXPECT_EQ(bad, 0u);
    EXPECT_EQ(ring.used_bytes(), 0u);
}

TEST(SpscByteRing, RegionsStopAtTheEndOfStorage) {
    SpscByteRing ring(12);
    std::vector<std::uint8_t> in(10, 1);
    ring.push(in);
    std::vector<std::uint8_t> out(8);
    ring.pop(out);
    EXPECT_EQ(ring.free_bytes(), 10u);
    auto w = ring.write_region(ring.tail(), 10);
    EXPECT_EQ(w.size(), 2u); // storage index 10..11, the rest wraps
    EXPECT_EQ(ring.read_region(ring.head(), 10).size(), 4u); // index 8..11; the caller limits by used_bytes()
    EXPECT_EQ(ring.read_region(ring.head(), ring.used_bytes()).size(), 2u);
}

TEST(SeqlockPosition, ReaderNeverSeesATornSnapshot) {
    SeqlockPosition p;
    std::atomic<bool> stop{false};
    std::thread writer([&] {
        for (std::uint64_t i = 1; !stop; ++i)
            p.store({i, static_cast<Nanos>(i * 3), i * 5, static_cast<Nanos>(i * 7), (i & 1) != 0});
    });
    std::uint64_t torn = 0, reads = 0;
    for (int k = 0; k < 2'000'000; ++k) {
        const PositionSnapshot s = p.load();
        ++reads;
        const std::uint64_t i = s.frames;
        torn += s.when != static_cast<Nanos>(i * 3) || s.limit != i * 5 || s.updated != static_cast<Nanos>(i * 7) ||
                s.running != ((i & 1) != 0);
    }
    stop = true;
    writer.join();
    EXPECT_EQ(torn, 0u) << "of " << reads;
}

TEST(AlsaGeometry, PlaybackStaysWellBelowTheGuestRing) {
    AlsaOptions o;
    // 10 ms x 8 guest periods: host period 10 ms, 3 queued + 1 in the ring = 40 ms = half the guest ring.
    auto g = backends::plan_alsa_geometry(format(wire::Direction::Output, 480, 8), o);
    EXPECT_EQ(g.period_frames, 480u);
    EXPECT_EQ(g.fill_frames, 1440u);
    EXPECT_EQ(g.ring_frames, 1920u);
    EXPECT_EQ(g.start_frames, 1440u);
    // 10 ms x 2 (Linux minimum): the host period shrinks to fit 4 of them into half the ring.
    g = backends::plan_alsa_geometry(format(wire::Direction::Output, 480, 2), o);
    EXPECT_EQ(g.period_frames, 120u);
    EXPECT_LE(g.ring_frames, 480u);
    // Never below 2 ms.
    g = backends::plan_alsa_geometry(format(wire::Direction::Output, 48, 2), o);
    EXPECT_EQ(g.period_frames, 96u);
    // Capture holds the guest ring and more.
    g = backends::plan_alsa_geometry(format(wire::Direction::Input, 1024, 4), o);
    EXPECT_EQ(g.period_frames, 1024u);
    EXPECT_GE(g.ring_frames, 4096u);
}

// Test thread: what the device does after open(), without a device: wait for the audio thread.
device::OpenState wait_opened(device::BackendStream& s) {
    for (int i = 0; i < 2000 && s.open_state().kind == device::OpenState::Opening; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return s.open_state();
}

TEST(AlsaBackend, ReportsOpenErrors) {
    MonotonicClock clock;
    AlsaBackend missing(clock, "vsnd_no_such_pcm", quiet());
    EXPECT_EQ(missing.name(), "alsa");
    // snd_pcm_open runs on the stream's thread: open() returns at once, the error arrives after.
    auto r = missing.open(0, format(wire::Direction::Output, 480, 4));
    ASSERT_TRUE(r) << r.error();
    std::atomic<int> woken{0};
    (*r)->set_waker([&] { ++woken; });
    // What the device does: set the waker, then look. Still opening then means a wake-up is owed.
    const bool owed = (*r)->open_state().kind == device::OpenState::Opening;
    const auto st = wait_opened(**r);
    ASSERT_EQ(st.kind, device::OpenState::Failed);
    EXPECT_NE(st.error.find("vsnd_no_such_pcm: cannot open for playback"), std::string::npos) << st.error;
    if (owed) EXPECT_EQ(woken.load(), 1) << "the device is woken once, when the open has failed";
    else EXPECT_LE(woken.load(), 1);
    r = Unexpected{std::string("closed")}; // a failed stream closes like any other

    AlsaBackend null(clock, "null", quiet());
    auto adpcm = format(wire::Direction::Output, 480, 4);
    adpcm.format = wire::PcmFormat::ImaAdpcm;
    auto r2 = null.open(0, adpcm);
    ASSERT_FALSE(r2);
    EXPECT_NE(r2.error().find("no ALSA equivalent"), std::string::npos) << r2.error();
}

// "null" is no sound card (it takes every frame at once and its status claims the OPEN state), so
// this only proves the life cycle: open, hand-over, start, stop, close without hanging, leaking
// or crashing, whatever the PCM answers (the stream may end up failed and paced by the clock).
TEST(AlsaBackend, NullPcmLifeCycle) {
    MonotonicClock clock;
    std::vector<std::string> logs;
    AlsaBackend backend(clock, "null", quiet(&logs));
    const auto fmt = format(wire::Direction::Output, 480, 8);
    auto opened = backend.open(0, fmt);
    ASSERT_TRUE(opened) << opened.error();
    auto& s = **opened;
    ASSERT_EQ(wait_opened(s).kind, device::OpenState::Ready);
    ASSERT_FALSE(logs.empty());
    EXPECT_NE(logs.front().find("host period 480 frames"), std::string::npos) << logs.front();

    const std::size_t room = s.writable_bytes();
    EXPECT_EQ(room, 1920u * 4);
    std::vector<std::uint8_t> data(room, 0x5a);
    s.write(data);
    EXPECT_EQ(s.writable_bytes(), 0u);
    EXPECT_EQ(s.position().frames, 0u);
    EXPECT_FALSE(s.next_wakeup().has_value()); // not started: nothing to look at
    s.start();
    EXPECT_TRUE(s.next_wakeup().has_value());
    // Whatever "null" does, the frames count as played within a moment (played or paced).
    std::uint64_t frames = 0;
    for (int i = 0; i < 400 && frames < 1920; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        const auto p = s.position();
        frames = p.frames + (p.running ? static_cast<std::uint64_t>((clock.now() - p.when) * 48000 / kNanosPerSecond) : 0);
    }
    EXPECT_GE(frames, 1920u);
    s.stop();
    EXPECT_FALSE(s.next_wakeup().has_value());
    std::vector<std::uint8_t> odd(7, 1); // partial frames are fine
    s.write(odd);
    s.start();
    s.stop();
    opened = Unexpected{std::string("closed")}; // destroys the stream: joins the thread, closes the PCM
}

TEST(AlsaBackend, NullPcmCaptureLifeCycle) {
    MonotonicClock clock;
    AlsaBackend backend(clock, "null", quiet());
    auto opened = backend.open(1, format(wire::Direction::Input, 480, 4));
    ASSERT_TRUE(opened) << opened.error();
    auto& s = **opened;
    ASSERT_EQ(wait_opened(s).kind, device::OpenState::Ready);
    EXPECT_EQ(s.writable_bytes(), 0u);
    s.start();
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    std::vector<std::uint8_t> out(s.readable_bytes());
    s.read(out);
    s.stop();
    opened = Unexpected{std::string("closed")};
}
