// The WAV backend: exactly the frames played, appended across PREPAREs of one format, a new file
// per format with the old one kept, capture from a file with silence after its end; a disk that
// stalls never stalls the device.
#include "../support/eventually.hpp"
#include "../support/realtime.hpp"
#include "../support/sim_rig.hpp"

#include "vsnd/backends/wav_backend.hpp"
#include "vsnd/audio/wav_file.hpp"
#include "vsnd/transport/device_end.hpp"
#include "vsnd/transport/device_runner.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <csignal>
#include <unistd.h>

#include <fstream>
#include <thread>

namespace vsnd::test {
namespace {

struct WavRig {
    std::filesystem::path dir = std::filesystem::temp_directory_path() / ("vsnd-wav-" + std::to_string(getpid()));
    SimulatedClock clock;
    transport::LoopbackTransport transport;
    std::unique_ptr<backends::WavBackend> backend;
    std::unique_ptr<device::SoundDevice> device;
    std::unique_ptr<transport::SimulatedLink> link;
    std::unique_ptr<driver::SoundDriver> driver;

    std::vector<std::string> log;

    WavRig() {
        std::filesystem::create_directories(dir);
        backend = std::make_unique<backends::WavBackend>(clock, dir, dir / "in.wav", backends::PacedTiming{},
                                                         backends::WavIo::Inline,
                                                         [this](const std::string& m) { log.push_back(m); });
        device = std::make_unique<device::SoundDevice>(device::Topology::standard(1, 1), *backend, clock);
        transport.publish_config(device->config(), 0);
        link = std::make_unique<transport::SimulatedLink>(transport, *device, clock);
        driver = std::make_unique<driver::SoundDriver>(*link, clock);
    }
    ~WavRig() { std::filesystem::remove_all(dir); }

    std::vector<std::uint8_t> read(const std::string& name, wire::PcmFormat f, std::uint32_t rate, std::uint8_t ch) {
        auto r = audio::WavFileReader::open(dir / name);
        EXPECT_TRUE(r) << name;
        if (!r) return {};
        EXPECT_EQ((*r)->rate(), rate);
        EXPECT_EQ((*r)->channels(), ch);
        return (*r)->read_all({f, rate, ch});
    }
};

// Plays `frames` of the signal from `first` on: whole periods, then STOP + RELEASE.
void play(WavRig& rig, const driver::PcmConfig& cfg, std::uint64_t first, std::uint64_t frames) {
    auto& s = rig.driver->stream(0);
    ASSERT_TRUE(s.set_params(cfg));
    ASSERT_TRUE(s.prepare());
    audio::TestSignal sig(cfg.format, cfg.channels);
    std::vector<std::uint8_t> buf(s.period_bytes());
    std::uint64_t done = 0;
    bool started = false;
    while (done < frames || s.in_flight()) {
        if (done < frames && s.writable_bytes() >= buf.size()) {
            sig.fill(buf, first + done);
            done += s.write(buf) / s.frame_bytes();
            continue;
        }
        if (!started) { ASSERT_TRUE(s.start()); started = true; }
        ASSERT_TRUE(rig.driver->wait(kNanosPerSecond));
    }
    ASSERT_TRUE(s.stop());
    ASSERT_TRUE(s.release());
}

// Created by a thread at real-time priority (vsnd-host --rt-priority), the backend's file thread
// still runs at normal priority: a stalled disk must not hold a core.
TEST(WavBackend, ItsFileThreadRunsAtNormalPriorityWhoeverCreatesIt) {
    if (!may_run_realtime(10)) GTEST_SKIP() << "no right to SCHED_FIFO here";
    const sched_param rt{.sched_priority = 10};
    int writer_policy = -1, creator_policy = -1;
    std::thread creator([&] {
        ASSERT_EQ(pthread_setschedparam(pthread_self(), SCHED_FIFO, &rt), 0);
        creator_policy = ::sched_getscheduler(0);
        SimulatedClock clock;
        const auto dir = std::filesystem::temp_directory_path() / ("vsnd-wav-rt-" + std::to_string(getpid()));
        backends::WavBackend backend(clock, dir, {});
        // The thread sets its own policy as it starts: look until it shows (or 2 s).
        eventually([&] {
            for (const auto& t : std::filesystem::directory_iterator("/proc/self/task")) {
                std::string comm;
                std::getline(std::ifstream(t.path() / "comm"), comm);
                if (comm == "vsnd-wav-io") writer_policy = ::sched_getscheduler(std::stoi(t.path().filename().string()));
            }
            return writer_policy == SCHED_OTHER;
        }, 2000);
        std::filesystem::remove_all(dir);
    });
    creator.join();
    EXPECT_EQ(creator_policy, SCHED_FIFO);
    EXPECT_EQ(writer_policy, SCHED_OTHER);
}

// A full disk (here the file size limit, RLIMIT_FSIZE: writes fail as they do on a full disk) in
// the middle of a stream: the guest plays on in real time with every message completed, the file
// holds an exact prefix of what was played, the loss is logged with its count, and once there is
// room again the next stream's frames are written. In a child process: the limit is per process.
TEST(WavBackend, DiskFullMidStreamKeepsPlayingAndTheFileExact) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        ::signal(SIGXFSZ, SIG_IGN);
        {
            WavRig rig; // its shared memory is a file too: limited after it exists
            rlimit lim{};
            ::getrlimit(RLIMIT_FSIZE, &lim);
            const rlim_t hard = lim.rlim_max;
            lim.rlim_cur = 100'000; // about 25 000 S16 stereo frames
            EXPECT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
            EXPECT_TRUE(rig.driver->probe());
            const driver::PcmConfig s16{wire::PcmFormat::S16, 48000, 2, 480, 4, 0};
            const Nanos t0 = rig.clock.now();
            play(rig, s16, 0, 48000); // 192 000 bytes: the limit falls mid-stream
            EXPECT_GE(rig.clock.now() - t0, 990'000'000) << "playback stays real-time";
            EXPECT_EQ(rig.driver->stream(0).io_errors(), 0u);
            const auto got = rig.read("stream-0.wav", wire::PcmFormat::S16, 48000, 2);
            EXPECT_GT(got.size(), 80'000u);
            EXPECT_LT(got.size(), 100'000u);
            EXPECT_FALSE(audio::TestSignal(wire::PcmFormat::S16, 2).compare(got, 0)) << "the file is an exact prefix";
            const std::uint64_t in_file = got.size() / 4;
            bool failure_logged = false, count_logged = false;
            for (const auto& l : rig.log) {
                failure_logged |= l.find("writing stream-0.wav failed (File too large)") != std::string::npos;
                count_logged |= l.find(std::to_string(48000 - in_file) + " frames played after the write failure") != std::string::npos;
            }
            EXPECT_TRUE(failure_logged && count_logged) << ::testing::PrintToString(rig.log);

            lim.rlim_cur = hard; // room again: the next stream goes to the disk
            EXPECT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
            std::filesystem::rename(rig.dir / "stream-0.wav", rig.dir / "full.wav");
            play(rig, s16, 0, 9600);
            const auto again = rig.read("stream-0.wav", wire::PcmFormat::S16, 48000, 2);
            EXPECT_EQ(again.size(), 9600u * 4);
            EXPECT_FALSE(audio::TestSignal(wire::PcmFormat::S16, 2).compare(again, 0));
        }
        std::fflush(stdout);
        ::_exit(::testing::Test::HasFailure() ? 1 : 0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the child's checks failed (above)";
}

TEST(WavBackend, ExactFramesAppendedAndOnePerFormat) {
    WavRig rig;
    ASSERT_TRUE(rig.driver->probe());
    const driver::PcmConfig s16{wire::PcmFormat::S16, 48000, 2, 480, 4, 0};
    play(rig, s16, 0, 4800);
    play(rig, s16, 4800, 9600); // same format: appended
    const driver::PcmConfig s24{wire::PcmFormat::S24, 96000, 6, 960, 4, 0};
    play(rig, s24, 0, 9600);    // new format: new file, the S16 one kept

    audio::TestSignal sig16(wire::PcmFormat::S16, 2), sig24(wire::PcmFormat::S24, 6);
    const auto first = rig.read("stream-0.1.wav", wire::PcmFormat::S16, 48000, 2);
    EXPECT_EQ(first.size(), 14400u * 4);
    EXPECT_FALSE(sig16.compare(first, 0));
    // Timing sidecars follow their WAVs: each PREPARE's runs, counted in file frames.
    std::ifstream t1(rig.dir / "stream-0.1.timing.csv");
    std::string all((std::istreambuf_iterator<char>(t1)), {});
    EXPECT_NE(all.find("# prepare: rate 48000, frames 4800\n0,"), std::string::npos) << all;
    EXPECT_NE(all.find("# prepare: rate 48000, frames 9600\n4800,"), std::string::npos) << all;
    EXPECT_TRUE(std::filesystem::exists(rig.dir / "stream-0.timing.csv"));
    const auto second = rig.read("stream-0.wav", wire::PcmFormat::S24, 96000, 6);
    EXPECT_EQ(second.size(), 9600u * 24);
    EXPECT_FALSE(sig24.compare(second, 0));
}

TEST(WavBackend, CaptureFromFileThenSilence) {
    WavRig rig;
    const device::StreamFormat sf{wire::Direction::Input, wire::PcmFormat::Float, 44100, 2, 0, 0};
    audio::TestSignal sig(wire::PcmFormat::Float, 2);
    {
        auto w = audio::WavFileWriter::open(rig.dir / "in.wav", sf.spec(), false);
        ASSERT_TRUE(w);
        std::vector<std::uint8_t> b(4410 * 8);
        sig.fill(b, 0);
        (*w)->write(b);
    }
    ASSERT_TRUE(rig.driver->probe());
    auto& in = rig.driver->stream(1);
    ASSERT_TRUE(in.set_params({wire::PcmFormat::Float, 44100, 2, 441, 4, 0}));
    ASSERT_TRUE(in.prepare());
    ASSERT_TRUE(in.start());
    std::vector<std::uint8_t> got, buf(in.period_bytes());
    while (got.size() < 8820u * 8) {
        if (!in.readable_bytes()) { ASSERT_TRUE(rig.driver->wait(kNanosPerSecond)); continue; }
        const auto n = in.read(buf);
        got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    }
    ASSERT_TRUE(in.stop());
    ASSERT_TRUE(in.release());
    EXPECT_FALSE(sig.compare(std::span(got).first(4410 * 8), 0));
    EXPECT_TRUE(std::all_of(got.begin() + 4410 * 8, got.end(), [](std::uint8_t b) { return b == 0; }));
}

TEST(WavBackend, MissingCaptureFileIsIoErrAtPrepare) {
    WavRig rig;
    ASSERT_TRUE(rig.driver->probe());
    auto& in = rig.driver->stream(1);
    ASSERT_TRUE(in.set_params({wire::PcmFormat::S16, 48000, 2, 480, 4, 0}));
    auto r = in.prepare();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().status, wire::Status::IoErr);
}

// Real time, file thread. Stream 1's file is a FIFO nobody writes, so opening it blocks the file
// thread (as a hung disk or NFS mount would) until the test lets go, while stream 0 plays 1 s. The
// device keeps completing stream 0 in real time, answers stream 1's PREPARE IO_ERR after its open
// timeout, and stream 0's frames wait in its file ring: its WAV is complete and bit-exact once the
// stall ends. (With WavIo::Inline the device thread hangs in the open: "stopped answering".)
TEST(WavBackend, StalledDiskNeverStallsTheDevice) {
    const auto dir = std::filesystem::temp_directory_path() / ("vsnd-wav-stall-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    const auto fifo = dir / "stream-1.wav";
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    MonotonicClock clock;
    backends::WavBackend backend(clock, dir, {});
    struct Unstall { // a failed assertion must not leave the file thread (joined by ~WavBackend) stuck
        std::filesystem::path fifo;
        ~Unstall() {
            if (int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK); fd >= 0) ::close(fd);
        }
    } unstall{fifo};
    device::SoundDevice dev(device::Topology::standard(2, 0), backend, clock);
    transport::LoopbackTransport t;
    t.publish_config(dev.config(), 0);
    transport::LoopbackDriverEnd driver_end(t, clock);
    transport::LoopbackDeviceEnd device_end(t, dev);
    boost::asio::io_context io;
    transport::DeviceRunner runner(io, device_end);
    runner.start();
    auto work = boost::asio::make_work_guard(io);
    std::thread loop([&] { io.run(); });

    driver::SoundDriver drv(driver_end, clock);
    ASSERT_TRUE(drv.probe());
    auto& s0 = drv.stream(0);
    auto& s1 = drv.stream(1);
    const driver::PcmConfig cfg{wire::PcmFormat::S16, 48000, 2, 480, 4, 0};
    ASSERT_TRUE(s0.set_params(cfg));
    ASSERT_TRUE(s0.prepare());
    ASSERT_TRUE(s1.set_params(cfg));

    audio::TestSignal sig(wire::PcmFormat::S16, 2);
    std::vector<std::uint8_t> buf(s0.period_bytes());
    const std::uint64_t total = 48000;
    std::uint64_t done = 0, completed_while_stalled = 0;
    bool started = false, prepare_sent = false, answered = false;
    Nanos sent_at = 0, answered_at = 0;
    std::string prepare_error;
    while (done < total || s0.in_flight()) {
        if (done < total && s0.writable_bytes() >= buf.size()) {
            sig.fill(buf, done);
            done += s0.write(buf) / 4;
            continue;
        }
        if (!started) {
            ASSERT_TRUE(s0.start());
            started = true;
        }
        if (!prepare_sent && done >= 4800) { // 0.1 s in
            const auto req = wire::encode(wire::PcmHeader{wire::Code::PcmPrepare, 1});
            ASSERT_TRUE(drv.control_async(req, 0, [&](const driver::Result& r, std::span<const std::uint8_t>) {
                answered = true;
                answered_at = clock.now();
                if (!r) prepare_error = r.error().message;
            }));
            prepare_sent = true;
            sent_at = clock.now();
        }
        const auto before = s0.periods_completed();
        ASSERT_TRUE(drv.wait(kNanosPerSecond)) << "the device stopped answering";
        if (prepare_sent && !answered) completed_while_stalled += s0.periods_completed() - before;
        drv.expire(clock.now());
    }
    ASSERT_TRUE(prepare_sent);
    for (int i = 0; i < 200 && !answered; ++i) {
        drv.wait(10'000'000);
        drv.expire(clock.now());
    }
    ASSERT_TRUE(answered);
    EXPECT_NE(prepare_error, "") << "a file that cannot open in time is IO_ERR";
    EXPECT_GE(answered_at - sent_at, device::SoundDevice::kOpenTimeout);
    // 0.75 s of 10 ms periods: at least half of them completed while the file thread was stuck.
    EXPECT_GE(completed_while_stalled, 37u);

    // The stall ends: the file thread's open of the FIFO gets a writer that writes nothing.
    const int w = ::open(fifo.c_str(), O_WRONLY);
    ASSERT_GE(w, 0);
    ::close(w);
    ASSERT_TRUE(s0.stop());
    ASSERT_TRUE(s0.release());
    boost::asio::post(io, [&] { runner.stop(); work.reset(); io.stop(); });
    loop.join();
    dev.reset();
    backend.flush();
    auto wav = audio::WavFileReader::open(backend.output_path(0));
    ASSERT_TRUE(wav) << wav.error();
    const auto played = (*wav)->read_all({wire::PcmFormat::S16, 48000, 2});
    EXPECT_EQ(played.size(), total * 4) << "frames played during the stall waited in the ring";
    EXPECT_FALSE(sig.compare(played, 0));
    std::filesystem::remove_all(dir);
}

} // namespace
} // namespace vsnd::test
