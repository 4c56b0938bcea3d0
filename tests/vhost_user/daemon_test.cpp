// The vsnd-host executable: option and start-up errors are one line on stderr with a non-zero
// exit, a stale socket is replaced, a live one is not, SIGTERM ends it cleanly, and the driver
// model plays through it from this process via the vhost-user front-end.
#include "support.hpp"
#include "../support/realtime.hpp"

#include "vsnd/driver/sound_driver.hpp"
#include "vsnd/vhost_user/frontend.hpp"

#include <gtest/gtest.h>

#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

namespace vsnd::test {
namespace {

struct Daemon {
    pid_t pid = -1;
    int err_fd = -1;

    static Daemon spawn(std::vector<std::string> args) {
        int p[2];
        EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
        Daemon d;
        d.pid = ::fork();
        if (d.pid == 0) {
            ::dup2(p[1], 2);
            std::vector<char*> argv;
            std::string bin = VSND_HOST_BIN;
            argv.push_back(bin.data());
            for (auto& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            ::execv(bin.c_str(), argv.data());
            _exit(127);
        }
        ::close(p[1]);
        d.err_fd = p[0];
        return d;
    }
    // Exit status (or -1 on timeout, then it is killed) and everything it wrote to stderr.
    std::pair<int, std::string> wait(int timeout_ms = 10000) {
        int status = 0;
        bool done = eventually([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, timeout_ms);
        if (!done) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
        }
        std::string out;
        char buf[4096];
        ssize_t n;
        while ((n = ::read(err_fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
        ::close(err_fd);
        pid = -1;
        return {done && WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
    }
    ~Daemon() {
        if (pid > 0) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
            ::close(err_fd);
        }
    }
};

bool listening(const std::filesystem::path& p) {
    int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, p.c_str(), sizeof a.sun_path - 1);
    const bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(s);
    return ok;
}

std::size_t lines(const std::string& s) { return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n')); }

struct DaemonTest : ::testing::Test {
    std::filesystem::path dir;
    void SetUp() override {
        dir = std::filesystem::temp_directory_path() / ("vsnd-daemon-" + std::to_string(::getpid()));
        std::filesystem::create_directories(dir);
    }
    void TearDown() override { std::filesystem::remove_all(dir); }
};

TEST_F(DaemonTest, BadOptionsAreOneLineAndNonZero) {
    for (auto args : std::vector<std::vector<std::string>>{
             {},
             {"--socket", (dir / "s").string(), "--backend", "pulse"},
             {"--socket", (dir / "s").string(), "--policy", "eventually"},
             {"--socket", (dir / "s").string(), "--rates", "12345"},
             {"--socket", (dir / "s").string(), "--streams", "sideways:1"},
             {"--socket", (dir / "s").string(), "--channels", "4-2"},
             {"--socket", (dir / "s").string(), "--backend", "wav", "--capture-wav", (dir / "missing.wav").string()},
             {"--socket", (dir / "s").string(), "--backend", "alsa", "--device", "vsnd_no_such_device"},
             {"--socket", (dir / "s").string(), "--backend", "wav", "-o", "device=hw:0"},
             {"--socket", (dir / "s").string(), "--backend", "null", "-o", "x:unpaced=1"},
             {"--socket", (dir / "s").string(), "--backend", "null", "-o", "0:unpaced=1"},
             {"--socket", (dir / "s").string(), "--backend", "alsa", "--device", "null", "-o", "9:device=null"},
             {"--socket", (dir / "s").string(), "--backend", "null", "--device", "hw:0"},
             {"--socket", (dir / "s").string(), "--backend", "null", "--wav-dir", dir.string()},
         }) {
        auto [code, err] = Daemon::spawn(args).wait();
        EXPECT_NE(code, 0) << err;
        EXPECT_EQ(lines(err), 1u) << err;
        EXPECT_EQ(err.rfind("vsnd-host: ", 0), 0u) << err;
    }
}

// What the user asked for and the backend cannot do fails at start-up, in one line naming the
// stream and why, not as IO_ERR at the guest's first PREPARE.
TEST_F(DaemonTest, ImpossibleTopologyIsOneLineAtStart) {
    // A PCM that cannot be opened leaves both directions unavailable; each stream says so.
    auto [code, err] = Daemon::spawn({"--socket", (dir / "s").string(), "--backend", "alsa", "--device",
                                      "vsnd_no_such_device", "--streams", "out:1,in:1"})
                           .wait();
    EXPECT_NE(code, 0);
    EXPECT_EQ(lines(err), 1u) << err;
    EXPECT_NE(err.find("cannot serve this topology: stream 0: the backend cannot do playback"), std::string::npos) << err;
    EXPECT_NE(err.find("stream 1: the backend cannot do capture"), std::string::npos) << err;
}

// --socket-group and --socket-mode give the socket exactly that group and mode (it is owner-only
// by default); a group that does not exist is one line at start.
TEST_F(DaemonTest, SocketGroupAndMode) {
    const auto sock = dir / "vsnd.sock";
    auto d = Daemon::spawn({"--socket", sock.string(), "--socket-group", std::to_string(::getgid()), "--socket-mode", "0660"});
    ASSERT_TRUE(eventually([&] { return listening(sock); }));
    struct stat st {};
    ASSERT_EQ(::lstat(sock.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0660u);
    EXPECT_EQ(st.st_gid, ::getgid());
    ::kill(d.pid, SIGTERM);
    EXPECT_EQ(d.wait().first, 0);

    auto [code, err] = Daemon::spawn({"--socket", sock.string(), "--socket-group", "vsnd-no-such-group"}).wait();
    EXPECT_NE(code, 0);
    EXPECT_EQ(lines(err), 1u) << err;
    EXPECT_NE(err.find("vsnd-no-such-group"), std::string::npos) << err;
    EXPECT_FALSE(listening(sock));
}

TEST_F(DaemonTest, LiveSocketIsRefusedStaleSocketReplaced) {
    const auto sock = dir / "vsnd.sock";
    // A stale socket file: bound once, nobody listening.
    {
        int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strncpy(a.sun_path, sock.c_str(), sizeof a.sun_path - 1);
        ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        ::close(s);
    }
    auto first = Daemon::spawn({"--socket", sock.string(), "--log-level", "warn"});
    ASSERT_TRUE(eventually([&] { return listening(sock); })) << "stale socket not replaced";
    auto [code, err] = Daemon::spawn({"--socket", sock.string()}).wait();
    EXPECT_EQ(code, 1);
    EXPECT_EQ(lines(err), 1u) << err;
    EXPECT_NE(err.find("in use"), std::string::npos) << err;
    EXPECT_TRUE(listening(sock)) << "the first daemon must be unaffected";
    ::kill(first.pid, SIGTERM);
    auto [code1, err1] = first.wait();
    EXPECT_EQ(code1, 0) << err1;
    EXPECT_FALSE(std::filesystem::exists(sock)) << "socket file left behind";

    std::ofstream(dir / "file") << "x";
    auto [code2, err2] = Daemon::spawn({"--socket", (dir / "file").string()}).wait();
    EXPECT_EQ(code2, 1);
    EXPECT_NE(err2.find("not a socket"), std::string::npos) << err2;
}

TEST_F(DaemonTest, PlaysAndCapturesForAFrontEndInAnotherProcess) {
    const auto sock = dir / "vsnd.sock";
    {
        const device::StreamFormat sf{wire::Direction::Input, wire::PcmFormat::S16, 48000, 2, 0, 0};
        auto w = audio::WavFileWriter::open(dir / "in.wav", sf.spec(), false);
        ASSERT_TRUE(w);
        std::vector<std::uint8_t> buf(48000 * 4);
        audio::TestSignal(wire::PcmFormat::S16, 2).fill(buf, 0);
        (*w)->write(buf);
    }
    auto d = Daemon::spawn({"--socket", sock.string(), "--backend", "wav", "--wav-dir", (dir / "out").string(),
                            "--capture-wav", (dir / "in.wav").string(), "--log-level", "warn"});
    ASSERT_TRUE(eventually([&] { return listening(sock); }));
    // The probe connections above are served and closed; the front-end waits in the backlog if needed.
    MonotonicClock clock;
    auto fe = vhost_user::Frontend::connect(sock);
    ASSERT_TRUE(fe) << fe.error();
    driver::SoundDriver drv(**fe, clock);
    ASSERT_TRUE(drv.probe());
    auto& s = drv.stream(0);
    const driver::PcmConfig cfg{wire::PcmFormat::S16, 48000, 2, 1024, 4, 0};
    ASSERT_TRUE(s.set_params(cfg));
    ASSERT_TRUE(s.prepare());
    audio::TestSignal sig(wire::PcmFormat::S16, 2);
    std::vector<std::uint8_t> buf(s.period_bytes());
    std::uint64_t written = 0;
    const std::uint64_t total = 1024 * 24;
    while (written < total || s.in_flight()) {
        if (written < total && s.writable_bytes() >= buf.size()) {
            sig.fill(buf, written);
            written += s.write(buf) / 4;
            if (written == 2048) {
                ASSERT_TRUE(s.start());
            }
            continue;
        }
        ASSERT_TRUE(drv.wait(kNanosPerSecond));
    }
    ASSERT_TRUE(s.stop());
    ASSERT_TRUE(s.release());

    auto& in = drv.stream(1);
    ASSERT_TRUE(in.set_params(cfg));
    ASSERT_TRUE(in.prepare());
    ASSERT_TRUE(in.start());
    std::vector<std::uint8_t> got;
    while (got.size() < 8192 * 4) {
        if (!in.readable_bytes()) {
            ASSERT_TRUE(drv.wait(kNanosPerSecond));
            continue;
        }
        const auto n = in.read(buf);
        got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    }
    ASSERT_TRUE(in.stop());
    ASSERT_TRUE(in.release());
    EXPECT_FALSE(sig.compare(got, 0));
    ASSERT_TRUE((*fe)->stop());
    fe->reset();

    ::kill(d.pid, SIGTERM);
    auto [code, err] = d.wait();
    EXPECT_EQ(code, 0) << err;
    EXPECT_EQ(err, "") << "warnings or errors logged";
    auto r = audio::WavFileReader::open(dir / "out" / "stream-0.wav");
    ASSERT_TRUE(r) << r.error();
    const auto played = (*r)->read_all({wire::PcmFormat::S16, 48000, 2});
    EXPECT_EQ(played.size(), total * 4);
    EXPECT_FALSE(sig.compare(played, 0));
}

TEST_F(DaemonTest, WavBackendWithoutCaptureFileRecordsSilence) {
    const auto sock = dir / "vsnd.sock";
    auto d = Daemon::spawn({"--socket", sock.string(), "--backend", "wav", "--wav-dir", dir.string(), "--log-level", "warn"});
    ASSERT_TRUE(eventually([&] { return listening(sock); }));
    MonotonicClock clock;
    auto fe = vhost_user::Frontend::connect(sock);
    ASSERT_TRUE(fe) << fe.error();
    driver::SoundDriver drv(**fe, clock);
    ASSERT_TRUE(drv.probe());
    auto& in = drv.stream(1);
    ASSERT_TRUE(in.set_params({wire::PcmFormat::S16, 48000, 2, 480, 4, 0}));
    ASSERT_TRUE(in.prepare());
    ASSERT_TRUE(in.start());
    std::vector<std::uint8_t> got, buf(in.period_bytes());
    while (got.size() < 4800 * 4) {
        if (!in.readable_bytes()) {
            ASSERT_TRUE(drv.wait(kNanosPerSecond));
            continue;
        }
        const auto n = in.read(buf);
        got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    }
    EXPECT_TRUE(std::all_of(got.begin(), got.end(), [](std::uint8_t b) { return b == 0; }));
    fe->reset();
    ::kill(d.pid, SIGTERM);
    auto [code, err] = d.wait();
    EXPECT_EQ(code, 0) << err;
}

// --rt-priority: the device loop (the main thread) runs SCHED_FIFO at that priority; the WAV
// writer thread does not (a stalled disk must not hold a core at real-time priority).
TEST_F(DaemonTest, RtPriorityPutsTheDeviceLoopNotTheWavWriterAtRealTime) {
    if (!may_run_realtime(20)) GTEST_SKIP() << "no right to SCHED_FIFO here";
    const auto sock = dir / "vsnd.sock";
    auto d = Daemon::spawn({"--socket", sock.string(), "--backend", "wav", "--wav-dir", dir.string(), "--rt-priority",
                            "20", "--log-level", "warn"});
    ASSERT_TRUE(eventually([&] { return listening(sock); }));
    const auto task = std::filesystem::path("/proc") / std::to_string(d.pid) / "task";
    ASSERT_TRUE(eventually([&] { return ::sched_getscheduler(d.pid) == SCHED_FIFO; })) << "the device loop is not SCHED_FIFO";
    sched_param got{};
    ASSERT_EQ(::sched_getparam(d.pid, &got), 0);
    EXPECT_EQ(got.sched_priority, 20);
    bool writer_seen = false;
    for (const auto& t : std::filesystem::directory_iterator(task)) {
        std::string comm;
        std::getline(std::ifstream(t.path() / "comm"), comm);
        if (comm != "vsnd-wav-io") continue;
        writer_seen = true;
        EXPECT_EQ(::sched_getscheduler(std::stoi(t.path().filename().string())), SCHED_OTHER);
    }
    EXPECT_TRUE(writer_seen) << "no vsnd-wav-io thread";
    ::kill(d.pid, SIGTERM);
    auto [code, err] = d.wait();
    EXPECT_EQ(code, 0) << err;
    EXPECT_EQ(err, "");
}

} // namespace
} // namespace vsnd::test
