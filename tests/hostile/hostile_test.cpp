// A hostile front-end against a real vsnd-host process, this build's own (the ASan/UBSan build
// attacks its instrumented daemon). Each case attacks through connections of its own: the
// vhost-user front-end library made hostile (raw messages, raw ring contents, fds of any kind), or a
// bare socket. Then the daemon is judged: alive; CPU idle while the attacker still holds its
// connection, and after; a clean front-end plays through it; RSS and open fds back near the
// baseline; its log bounded; no sanitizer report. The threat model is in host/README.md.
#include "../support/eventually.hpp"
#include "../support/frontend_play.hpp"

#include "vsnd/vhost_user/frontend.hpp"
#include "vsnd/vhost_user/protocol.hpp"
#include "vsnd/vhost_user/socket_io.hpp"
#include "vsnd/virtq/split_ring.hpp"
#include "vsnd/wire/virtio_snd.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <thread>

namespace vsnd::test {
namespace {

using namespace vsnd::vhost_user;
using Bytes = std::vector<std::uint8_t>;
namespace fs = std::filesystem;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

// Limits the judge applies after every case.
constexpr double kIdleCpuShare = 0.10;             // of one core, over kIdleWindow
constexpr auto kIdleWindow = std::chrono::milliseconds(600);
constexpr long kRssSlackKib = kSanitized ? 96 * 1024 : 24 * 1024; // ASan keeps freed memory in quarantine
constexpr std::uintmax_t kLogBytesPerCase = 64 * 1024;
constexpr int kStallTimeoutMs = 400;

// ---- the daemon, and what /proc says about it ------------------------------------------------

class Daemon {
public:
    explicit Daemon(const fs::path& dir) : socket_(dir / "vsnd.sock"), log_(dir / "vsnd-host.log") {
        pid_ = ::fork();
        if (pid_ == 0) {
            const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            ::dup2(fd, 1);
            ::dup2(fd, 2);
            const std::string stall = std::to_string(kStallTimeoutMs);
            const char* argv[] = {VSND_HOST_BIN, "--socket", socket_.c_str(), "--backend", "null",
                                  "--streams", "out:2,in:2", "--stall-timeout-ms", stall.c_str(), nullptr};
            ::execv(VSND_HOST_BIN, const_cast<char* const*>(argv));
            _exit(127);
        }
    }
    ~Daemon() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    const fs::path& socket() const { return socket_; }
    pid_t pid() const { return pid_; }

    bool alive() {
        if (pid_ <= 0) return false;
        int status;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            return false;
        }
        return true;
    }
    // User + system CPU time in clock ticks.
    long cpu_ticks() const {
        std::ifstream f("/proc/" + std::to_string(pid_) + "/stat");
        std::string s((std::istreambuf_iterator<char>(f)), {});
        const auto close = s.rfind(')');
        if (close == std::string::npos) return -1;
        std::istringstream in(s.substr(close + 2));
        std::string field;
        long utime = 0, stime = 0;
        for (int i = 3; i <= 15 && in >> field; ++i) {
            if (i == 14) utime = std::stol(field);
            if (i == 15) stime = std::stol(field);
        }
        return utime + stime;
    }
    // Share of one core used over `window`.
    double cpu_share(std::chrono::milliseconds window) const {
        const long t0 = cpu_ticks();
        std::this_thread::sleep_for(window);
        const long t1 = cpu_ticks();
        return static_cast<double>(t1 - t0) / static_cast<double>(::sysconf(_SC_CLK_TCK)) /
               (static_cast<double>(window.count()) / 1000.0);
    }
    long rss_kib() const {
        std::ifstream f("/proc/" + std::to_string(pid_) + "/status");
        std::string line;
        while (std::getline(f, line))
            if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
        return -1;
    }
    int open_fds() const {
        int n = 0;
        std::error_code ec;
        for (auto it = fs::directory_iterator("/proc/" + std::to_string(pid_) + "/fd", ec); !ec && it != fs::directory_iterator();
             it.increment(ec))
            ++n;
        return n;
    }
    std::uintmax_t log_bytes() const {
        std::error_code ec;
        const auto n = fs::file_size(log_, ec);
        return ec ? 0 : n;
    }
    std::string log_text(std::uintmax_t from = 0) const {
        std::ifstream f(log_);
        f.seekg(static_cast<std::streamoff>(from));
        return std::string((std::istreambuf_iterator<char>(f)), {});
    }
    // SIGTERM; the exit status (-1 if it had to be killed).
    int terminate() {
        if (pid_ <= 0) return -1;
        ::kill(pid_, SIGTERM);
        int status = 0;
        const bool done = eventually([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, 10000);
        if (!done) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, &status, 0);
        }
        pid_ = -1;
        return done && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }

private:
    fs::path socket_, log_;
    pid_t pid_ = -1;
};

// ---- a bare socket --------------------------------------------------------------------------

UniqueFd connect_raw(const fs::path& path) {
    UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) s.reset();
    return s;
}

bool send_all(int fd, std::span<const std::uint8_t> bytes, std::span<const int> fds = {}) {
    std::size_t done = 0;
    while (done < bytes.size()) {
        auto n = send_with_fds(fd, bytes.subspan(done), done == 0 ? fds : std::span<const int>{}, false);
        if (!n) return false;
        done += *n;
    }
    return true;
}

// True once the daemon has closed `fd` (EOF or reset), within `ms`.
bool closed_by_daemon(int fd, int ms = 3000) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < end) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 20) > 0) {
            std::uint8_t b[4096];
            const ssize_t n = ::recv(fd, b, sizeof b, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN)) return true;
        }
    }
    return false;
}

// ---- a guest that writes its rings by hand ----------------------------------------------------

struct Desc {
    std::uint64_t addr;
    std::uint32_t len;
    std::uint16_t flags, next;
};

// The front-end's connection and guest memory, with every ring written raw: no driver-side
// bookkeeping stands between the test and what the daemon reads.
class HostileGuest {
public:
    static constexpr std::uint64_t kRequest = 0;           // DMA offsets
    static constexpr std::uint64_t kResponse = 4096;
    static constexpr std::uint64_t kTables = 1u << 20;     // indirect tables
    static constexpr std::uint64_t kPayload = 2u << 20;

    static std::unique_ptr<HostileGuest> connect(const fs::path& socket, FrontendOptions o = {}) {
        auto fe = Frontend::connect(socket, o);
        EXPECT_TRUE(fe) << (fe ? "" : fe.error());
        if (!fe) return nullptr;
        return std::unique_ptr<HostileGuest>(new HostileGuest(std::move(*fe)));
    }

    Frontend& fe() { return *fe_; }
    std::uint16_t size() const { return fe_->layout().queue_size(); }
    std::uint64_t gpa(std::uint64_t dma_off) const { return fe_->guest_base() + fe_->layout().dma_offset() + dma_off; }
    std::uint8_t* host(std::uint64_t dma_off) { return fe_->guest_memory().data() + fe_->layout().dma_offset() + dma_off; }
    std::uint64_t ring_gpa(unsigned q, char part) const {
        const auto& p = fe_->layout().queue(q);
        return fe_->guest_base() + (part == 'd' ? p.desc : part == 'a' ? p.avail : p.used);
    }
    std::uint64_t ring_user(unsigned q, char part) const { return ring_gpa(q, part) - fe_->guest_base() + fe_->user_address(); }
    std::uint8_t* ring(unsigned q, char part) { return fe_->guest_memory().data() + (ring_gpa(q, part) - fe_->guest_base()); }

    void desc(unsigned q, std::uint16_t i, Desc d) { write_desc(ring(q, 'd') + 16u * i, d); }
    static void write_desc(std::uint8_t* at, Desc d) {
        std::memcpy(at, &d.addr, 8);
        std::memcpy(at + 8, &d.len, 4);
        std::memcpy(at + 12, &d.flags, 2);
        std::memcpy(at + 14, &d.next, 2);
    }
    // Puts `head` in the next avail slot and moves the index (the device sees it at the next kick).
    void publish(unsigned q, std::uint16_t head) {
        std::uint8_t* a = ring(q, 'a');
        std::memcpy(a + 4 + 2u * (next_avail_[q] % size()), &head, 2);
        ++next_avail_[q];
        set_avail_idx(q, next_avail_[q]);
    }
    void set_avail_idx(unsigned q, std::uint16_t idx) {
        next_avail_[q] = idx;
        std::atomic_thread_fence(std::memory_order_release);
        __atomic_store_n(reinterpret_cast<std::uint16_t*>(ring(q, 'a') + 2), idx, __ATOMIC_RELEASE);
    }
    std::uint16_t used_idx(unsigned q) { return __atomic_load_n(reinterpret_cast<std::uint16_t*>(ring(q, 'u') + 2), __ATOMIC_ACQUIRE); }
    std::uint32_t used_len(unsigned q, std::uint16_t i) {
        std::uint32_t len;
        std::memcpy(&len, ring(q, 'u') + 4 + 8u * (i % size()) + 4, 4);
        return len;
    }
    void kick(unsigned q) { fe_->kick(q); }
    bool wait_used(unsigned q, std::uint16_t target, int ms = 3000) {
        return eventually([&] { return static_cast<std::int16_t>(used_idx(q) - target) >= 0; }, ms);
    }

    // A control request through descriptors 0 (readable) and 1 (writable, 4 + `response` bytes).
    // The status, or nullopt when the device did not answer within 3 s (a loaded host).
    std::optional<wire::Status> control(std::span<const std::uint8_t> req, std::uint32_t response = 0) {
        std::memcpy(host(kRequest), req.data(), req.size());
        desc(0, 0, {gpa(kRequest), static_cast<std::uint32_t>(req.size()), virtq::VRING_DESC_F_NEXT, 1});
        desc(0, 1, {gpa(kResponse), 4 + response, virtq::VRING_DESC_F_WRITE, 0});
        const std::uint16_t target = static_cast<std::uint16_t>(used_idx(0) + 1);
        publish(0, 0);
        kick(0);
        if (!wait_used(0, target)) return std::nullopt;
        std::uint32_t st;
        std::memcpy(&st, host(kResponse), 4);
        return static_cast<wire::Status>(st);
    }
    template <class T> std::optional<wire::Status> control(const T& msg) {
        const auto b = wire::encode(msg);
        return control(std::span<const std::uint8_t>(b));
    }
    // Stream `id` set up (S16 48 kHz stereo, 10 ms periods), prepared and, if asked, started.
    bool open_stream(std::uint32_t id, bool start = true) {
        const wire::PcmSetParams p{id, 19200, 1920, 0, 2, wire::PcmFormat::S16, wire::PcmRate::R48000};
        if (control(p) != wire::Status::Ok) return false;
        if (control(wire::PcmHeader{wire::Code::PcmPrepare, id}) != wire::Status::Ok) return false;
        return !start || control(wire::PcmHeader{wire::Code::PcmStart, id}) == wire::Status::Ok;
    }

private:
    explicit HostileGuest(std::unique_ptr<Frontend> fe) : fe_(std::move(fe)) {}
    std::unique_ptr<Frontend> fe_;
    std::array<std::uint16_t, 4> next_avail_{};
};

constexpr unsigned kControl = 0, kEvent = 1, kTx = 2, kRx = 3;
constexpr std::uint16_t N = virtq::VRING_DESC_F_NEXT, W = virtq::VRING_DESC_F_WRITE, I = virtq::VRING_DESC_F_INDIRECT;

// A tx message: header and status descriptors around `pieces` payload descriptors of `piece`
// bytes each, as one indirect table at kTables + slot * 16 KiB (slot < 64).
void tx_message(HostileGuest& g, std::uint16_t head, unsigned slot, unsigned pieces, std::uint32_t piece) {
    const std::uint64_t table = HostileGuest::kTables + slot * 16384u;
    const std::uint64_t data = HostileGuest::kPayload + slot * 65536u;
    const std::uint32_t xfer = 0;
    std::memcpy(g.host(data), &xfer, 4);
    HostileGuest::write_desc(g.host(table), {g.gpa(data), 4, N, 1});
    for (unsigned i = 0; i < pieces; ++i)
        HostileGuest::write_desc(g.host(table) + 16u * (i + 1),
                                 {g.gpa(data + 64 + (i * piece) % 60000), piece, N, static_cast<std::uint16_t>(i + 2)});
    HostileGuest::write_desc(g.host(table) + 16u * (pieces + 1), {g.gpa(data + 8), 8, W, 0});
    g.desc(kTx, head, {g.gpa(table), 16u * (pieces + 2), I, 0});
}

// ---- the cases ------------------------------------------------------------------------------

struct Case {
    const char* name;
    std::function<void(const fs::path& socket)> attack;
    // The connection the attack leaves open while the judge looks at the CPU (then it is closed).
    bool holds_connection = false;
};

// The attacker's last connection, kept open for the first CPU look.
std::unique_ptr<HostileGuest> held;

std::vector<Case> cases() {
    return {
        {"garbage bytes",
         [](const fs::path& s) {
             std::mt19937 rng(1);
             Bytes junk(8192);
             for (auto& b : junk) b = static_cast<std::uint8_t>(rng());
             auto fd = connect_raw(s);
             send_all(fd.get(), junk);
             EXPECT_TRUE(closed_by_daemon(fd.get()));
         }},
        {"disconnects mid-message (header, payload, fds sent ahead of the bytes)",
         [](const fs::path& s) {
             const auto m = encode_message(static_cast<std::uint32_t>(Request::SetFeatures), kVersion, encode_u64(kFeatureVersion1));
             for (std::size_t cut : {1ul, 6ul, 11ul, 12ul, 15ul}) {
                 auto fd = connect_raw(s);
                 send_all(fd.get(), encode_message(static_cast<std::uint32_t>(Request::SetOwner), kVersion, {}));
                 send_all(fd.get(), std::span(m).first(cut));
             }
             auto fd = connect_raw(s); // a memory table's fds arrive, its payload never does
             int memfd = ::memfd_create("hostile", MFD_CLOEXEC);
             ::ftruncate(memfd, 1 << 20);
             const auto mt = encode_message(static_cast<std::uint32_t>(Request::SetMemTable), kVersion, encode(MemoryTable{{RegionDesc{0, 1 << 20, 0x10000000, 0}}}));
             send_all(fd.get(), encode_message(static_cast<std::uint32_t>(Request::SetOwner), kVersion, {}));
             send_all(fd.get(), std::span(mt).first(14), std::span(&memfd, 1));
             ::close(memfd);
         }},
        {"a silent client, then one stalled mid-message, then one that never reads its replies",
         [](const fs::path& s) {
             auto silent = connect_raw(s);
             EXPECT_TRUE(closed_by_daemon(silent.get(), 5 * kStallTimeoutMs));
             auto stalled = connect_raw(s);
             send_all(stalled.get(), encode_message(static_cast<std::uint32_t>(Request::SetOwner), kVersion, {}));
             const auto m = encode_message(static_cast<std::uint32_t>(Request::SetFeatures), kVersion, encode_u64(0));
             send_all(stalled.get(), std::span(m).first(7));
             EXPECT_TRUE(closed_by_daemon(stalled.get(), 5 * kStallTimeoutMs));
             auto deaf = connect_raw(s);
             const auto q = encode_message(static_cast<std::uint32_t>(Request::GetFeatures), kVersion, {});
             Bytes many;
             for (int i = 0; i < 50000; ++i) many.insert(many.end(), q.begin(), q.end());
             ::fcntl(deaf.get(), F_SETFL, O_NONBLOCK);
             std::size_t sent = 0;
             const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(2);
             while (sent < many.size() && std::chrono::steady_clock::now() < end) {
                 const ssize_t n = ::send(deaf.get(), many.data() + sent, many.size() - sent, MSG_NOSIGNAL);
                 if (n > 0) sent += static_cast<std::size_t>(n);
                 else std::this_thread::sleep_for(std::chrono::milliseconds(5));
             }
         }},
        {"fds of every wrong kind",
         [](const fs::path& s) {
             int pipefd[2];
             ASSERT_EQ(::pipe2(pipefd, O_CLOEXEC), 0);
             int sp[2];
             ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
             const int file = ::open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
             const int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
             const int dir = ::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
             const int opath = ::open("/", O_PATH | O_CLOEXEC);
             const int memfd = ::memfd_create("hostile", MFD_CLOEXEC);
             const int efd = ::eventfd(0, EFD_CLOEXEC);
             const std::vector<int> wrong{pipefd[0], pipefd[1], sp[0], file, devnull, dir, opath, memfd, efd};
             for (int fd : wrong) {
                 for (Request r : {Request::SetVringKick, Request::SetVringCall, Request::SetVringErr}) {
                     auto g = HostileGuest::connect(s);
                     if (!g) return;
                     (void)g->fe().send_raw(r, encode(VringFile{kTx, false}), std::span(&fd, 1));
                     g->kick(kTx);
                     (void)g->fe().send_raw(Request::GetFeatures, {}, {}, 8);
                 }
                 auto g = HostileGuest::connect(s); // as guest memory
                 if (!g) return;
                 (void)g->fe().send_raw(Request::SetMemTable, encode(MemoryTable{{RegionDesc{0, 1 << 20, 0x10000000, 0}}}),
                                        std::span(&fd, 1));
                 (void)g->fe().send_raw(Request::GetFeatures, {}, {}, 8);
             }
             for (int fd : {pipefd[0], pipefd[1], sp[0], sp[1], file, devnull, dir, opath, memfd, efd}) ::close(fd);
         }},
        {"every vhost-user request out of order, with random payloads (seeded)",
         [](const fs::path& s) {
             std::mt19937 rng(7);
             for (int round = 0; round < 8; ++round) {
                 auto fd = connect_raw(s);
                 for (int i = 0; i < 200; ++i) {
                     const std::uint32_t req = 1 + rng() % 40;
                     Bytes payload(rng() % 3 == 0 ? 0 : (rng() % 2 ? 8 : rng() % 64));
                     for (auto& b : payload) b = static_cast<std::uint8_t>(rng() % 4 ? 0 : rng());
                     const int efd = ::eventfd(0, EFD_CLOEXEC);
                     const bool with_fd = rng() % 4 == 0;
                     const bool ok = send_all(fd.get(), encode_message(req, kVersion | (rng() % 2 ? kFlagNeedReply : 0), payload),
                                              with_fd ? std::span(&efd, 1) : std::span<const int>{});
                     ::close(efd);
                     if (!ok) break;
                 }
             }
         }},
        {"ring addresses: used over avail, rings crossing queues, misaligned, outside memory",
         [](const fs::path& s) {
             auto restart = [](HostileGuest& g, unsigned q, std::uint64_t desc, std::uint64_t used, std::uint64_t avail) {
                 (void)g.fe().stop();
                 (void)g.fe().send_raw(Request::SetVringAddr, encode(VringAddr{q, 0, desc, used, avail, 0}));
                 (void)g.fe().send_raw(Request::SetVringBase, encode(VringState{q, 0}));
                 for (unsigned i = 0; i < 4; ++i) { // as QEMU restarts a device: kicks again, then enable
                     const int kick = g.fe().kick_fd(i);
                     (void)g.fe().send_raw(Request::SetVringKick, encode(VringFile{i, false}), std::span(&kick, 1));
                 }
                 for (unsigned i = 0; i < 4; ++i)
                     (void)g.fe().send_raw(Request::SetVringEnable, encode(VringState{i, 1}));
                 g.publish(q, 0);
                 g.kick(q);
                 return eventually([&] { return !g.fe().send_raw(Request::GetFeatures, {}, {}, 8); }, 2000);
             };
             for (unsigned variant : {0u, 2u, 3u, 1u}) { // the one held open last: one front-end at a time
                 auto g = HostileGuest::connect(s);
                 if (!g) return;
                 const std::uint64_t d = g->ring_user(kTx, 'd'), a = g->ring_user(kTx, 'a'), u = g->ring_user(kTx, 'u');
                 g->desc(kTx, 0, {g->gpa(0), 4, 0, 0});
                 bool refused = false;
                 switch (variant) {
                 case 0: refused = restart(*g, kTx, d, a, a); break;                      // used over avail
                 case 1: refused = restart(*g, kTx, d, g->ring_user(kRx, 'a'), a); break; // over another queue's
                 case 2: refused = restart(*g, kTx, d + 8, u + 2, a + 1); break;         // misaligned
                 case 3: refused = restart(*g, kTx, d, u + (1ull << 40), a); break;      // outside memory
                 }
                 EXPECT_TRUE(refused) << "ring layout " << variant << " was not refused";
             }
         }},
        {"avail index jumps and republished heads (indirect tables of 1024)",
         [](const fs::path& s) {
             {
                 auto g = HostileGuest::connect(s);
                 if (!g || !g->open_stream(0)) return;
                 for (std::uint16_t h = 0; h < 4; ++h) tx_message(*g, h, h, 1, 1920);
                 g->set_avail_idx(kTx, 1000); // 1000 "new" entries on a 64-entry ring
                 g->kick(kTx);
                 (void)g->fe().send_raw(Request::GetFeatures, {}, {}, 8);
             }
             auto g = HostileGuest::connect(s);
             if (!g || !g->open_stream(0)) return;
             tx_message(*g, 0, 0, 1022, 4);
             for (int i = 0; i < 300; ++i) { // kicked one by one, so no single step jumps the index
                 g->publish(kTx, 0);
                 g->kick(kTx);
                 std::this_thread::sleep_for(std::chrono::microseconds(500));
             }
             g->kick(kTx);
             held = std::move(g);
         },
         true},
        {"descriptor loops, aliasing and writable buffers over the rings",
         [](const fs::path& s) {
             auto g = HostileGuest::connect(s);
             if (!g) return;
             const auto info = wire::encode(wire::QueryInfo{wire::Code::PcmInfo, 0, 4, 32});
             std::memcpy(g->host(0), info.data(), info.size());
             // 0 -> 1 -> 0
             g->desc(kControl, 2, {g->gpa(0), 16, N, 3});
             g->desc(kControl, 3, {g->gpa(16), 16, N, 2});
             g->publish(kControl, 2);
             // a self loop through an indirect table
             HostileGuest::write_desc(g->host(HostileGuest::kTables), {g->gpa(0), 16, N, 0});
             g->desc(kControl, 4, {g->gpa(HostileGuest::kTables), 16, I, 0});
             g->publish(kControl, 4);
             // an indirect descriptor inside an indirect table
             HostileGuest::write_desc(g->host(HostileGuest::kTables + 4096), {g->gpa(HostileGuest::kTables), 16, I, 0});
             g->desc(kControl, 5, {g->gpa(HostileGuest::kTables + 4096), 16, I, 0});
             g->publish(kControl, 5);
             // two heads sharing one writable descriptor, and a response written over the avail ring,
             // the used ring and the descriptor table itself
             g->desc(kControl, 6, {g->gpa(0), 16, N, 8});
             g->desc(kControl, 7, {g->gpa(0), 16, N, 8});
             g->desc(kControl, 8, {g->gpa(4096), 4 + 4 * 32, W, 0});
             g->publish(kControl, 6);
             g->publish(kControl, 7);
             g->kick(kControl);
             (void)g->fe().send_raw(Request::GetFeatures, {}, {}, 8);
             for (char part : {'d', 'u', 'a'}) { // the avail ring last: it breaks the queue
                 g->desc(kControl, 9, {g->gpa(0), 16, N, 10});
                 g->desc(kControl, 10, {g->ring_gpa(kControl, part), 4 + 4 * 32, W, 0});
                 g->publish(kControl, 9);
                 g->kick(kControl);
                 (void)g->fe().send_raw(Request::GetFeatures, {}, {}, 8);
             }
             held = std::move(g);
         },
         true},
        {"huge, wrapping and one-byte descriptors",
         [](const fs::path& s) {
             auto g = HostileGuest::connect(s);
             if (!g || !g->open_stream(0)) return;
             const std::uint32_t x = 0;
             std::memcpy(g->host(HostileGuest::kPayload), &x, 4);
             const std::uint64_t hdr = g->gpa(HostileGuest::kPayload);
             g->desc(kTx, 0, {hdr, 4, N, 1});
             g->desc(kTx, 1, {hdr + 64, 0xffffffffu, N, 2}); // beyond guest memory
             g->desc(kTx, 2, {hdr + 8, 8, W, 0});
             g->publish(kTx, 0);
             g->desc(kTx, 3, {~std::uint64_t{0} - 8, 64, N, 2}); // address + length wraps
             g->publish(kTx, 3);
             g->kick(kTx);
             // 40 messages of 1020 one-byte pieces each: gathered, not one backend write per byte
             for (std::uint16_t h = 8; h < 48; ++h) {
                 tx_message(*g, h, h, 1020, 1);
                 g->publish(kTx, h);
             }
             g->kick(kTx);
             EXPECT_TRUE(g->wait_used(kTx, 42, 3000)) << "one-byte messages were not completed";
             held = std::move(g);
         },
         true},
        {"oversized requests of every kind",
         [](const fs::path& s) {
             auto g = HostileGuest::connect(s);
             if (!g) return;
             // info queries with huge counts and item sizes over 1024 writable 64-byte pieces
             for (wire::Code c : {wire::Code::PcmInfo, wire::Code::JackInfo, wire::Code::ChmapInfo}) {
                 for (auto [count, size] : {std::pair{0xffffffffu, 0xffffffffu}, {1u, 0x7fffffffu}, {4u, 0x3fe0u}}) {
                     const auto q = wire::encode(wire::QueryInfo{c, 0, count, size});
                     std::memcpy(g->host(0), q.data(), q.size());
                     HostileGuest::write_desc(g->host(HostileGuest::kTables), {g->gpa(0), 16, N, 1});
                     for (unsigned i = 1; i < 1024; ++i)
                         HostileGuest::write_desc(g->host(HostileGuest::kTables) + 16u * i,
                                                  {g->gpa(4096 + 64 * i), 64, static_cast<std::uint16_t>(W | (i < 1023 ? N : 0)),
                                                   static_cast<std::uint16_t>(i + 1)});
                     g->desc(kControl, 0, {g->gpa(HostileGuest::kTables), 16 * 1024, I, 0});
                     const std::uint16_t target = static_cast<std::uint16_t>(g->used_idx(kControl) + 1);
                     g->publish(kControl, 0);
                     g->kick(kControl);
                     EXPECT_TRUE(g->wait_used(kControl, target, 2000)) << "an info query was not answered within 2 s";
                 }
             }
             // a request header followed by 64 KiB, parameters out of every range, unknown codes
             Bytes big(65536, 0);
             const auto p = wire::encode(wire::PcmSetParams{0, 19200, 1920, 0, 2, wire::PcmFormat::S16, wire::PcmRate::R48000});
             std::copy(p.begin(), p.end(), big.begin());
             EXPECT_TRUE(g->control(std::span<const std::uint8_t>(big)).has_value());
             for (auto sp : {wire::PcmSetParams{0, 0xffffffffu, 0xffffffffu, 0xffffffffu, 255, wire::PcmFormat::S16, wire::PcmRate::R48000},
                             wire::PcmSetParams{0xffffffffu, 19200, 1920, 0, 2, wire::PcmFormat::S16, wire::PcmRate::R48000},
                             wire::PcmSetParams{0, 19200, 1, 0, 2, wire::PcmFormat::S16, wire::PcmRate::R48000},
                             wire::PcmSetParams{0, 0x40000000u, 0x20000000u, 0, 2, wire::PcmFormat::S16, wire::PcmRate::R48000}})
                 EXPECT_TRUE(g->control(sp).has_value());
             for (std::uint32_t code : {0u, 0x0106u, 0x0300u, 0x0306u, 0x1000u, 0xffffffffu}) {
                 const wire::PcmHeader h{static_cast<wire::Code>(code), 0};
                 EXPECT_TRUE(g->control(h).has_value());
             }
             // a 15 MiB tx message: 1022 pieces of 15 KiB
             if (g->open_stream(1)) {
                 const std::uint64_t table = HostileGuest::kTables;
                 const std::uint32_t xfer = 1;
                 std::memcpy(g->host(HostileGuest::kPayload), &xfer, 4);
                 HostileGuest::write_desc(g->host(table), {g->gpa(HostileGuest::kPayload), 4, N, 1});
                 for (unsigned i = 1; i <= 1022; ++i)
                     HostileGuest::write_desc(g->host(table) + 16u * i, {g->gpa(HostileGuest::kPayload + 64), 15360, N,
                                                                          static_cast<std::uint16_t>(i + 1)});
                 HostileGuest::write_desc(g->host(table) + 16u * 1023, {g->gpa(HostileGuest::kPayload + 8), 8, W, 0});
                 g->desc(kTx, 0, {g->gpa(table), 16 * 1024, I, 0});
                 g->publish(kTx, 0);
                 g->kick(kTx);
             }
             // rx and event buffers of the wrong shape: readable only, zero-length, 8 MiB
             g->desc(kRx, 0, {g->gpa(0), 4, 0, 0});
             g->desc(kRx, 1, {g->gpa(0), 0, W, 0});
             g->desc(kRx, 2, {g->gpa(HostileGuest::kPayload), 8u << 20, W, 0});
             g->desc(kEvent, 0, {g->gpa(0), 8, 0, 0});
             g->desc(kEvent, 1, {g->gpa(0), 1, W, 0});
             for (std::uint16_t h = 0; h < 3; ++h) g->publish(kRx, h);
             for (std::uint16_t h = 0; h < 2; ++h) g->publish(kEvent, h);
             g->kick(kRx);
             g->kick(kEvent);
             held = std::move(g);
         },
         true},
        {"PCM commands in every order, interleaved with I/O (seeded)",
         [](const fs::path& s) {
             auto g = HostileGuest::connect(s);
             if (!g) return;
             std::mt19937 rng(11);
             const wire::Code codes[] = {wire::Code::PcmSetParams, wire::Code::PcmPrepare, wire::Code::PcmRelease,
                                         wire::Code::PcmStart, wire::Code::PcmStop};
             unsigned unanswered = 0;
             for (int i = 0; i < 400; ++i) {
                 const std::uint32_t id = rng() % 5; // 4 streams and one that does not exist
                 const wire::Code c = codes[rng() % 5];
                 std::optional<wire::Status> st;
                 if (c == wire::Code::PcmSetParams)
                     st = g->control(wire::PcmSetParams{id, 19200, 1920, 0, 2, wire::PcmFormat::S16, wire::PcmRate::R48000});
                 else
                     st = g->control(wire::PcmHeader{c, id});
                 if (!st) ++unanswered;
                 if (i % 7 == 0) {
                     const std::uint16_t h = static_cast<std::uint16_t>(rng() % 32);
                     tx_message(*g, h, h, 1, 1920);
                     std::memcpy(g->host(HostileGuest::kPayload + h * 65536u), &id, 4);
                     g->publish(kTx, h);
                     g->kick(kTx);
                 }
             }
             EXPECT_EQ(unanswered, 0u) << "control requests went unanswered";
             held = std::move(g);
         },
         true},
        {"kick floods",
         [](const fs::path& s) {
             auto g = HostileGuest::connect(s);
             if (!g || !g->open_stream(0)) return;
             const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(1);
             for (int i = 0; i < 200000 && std::chrono::steady_clock::now() < end; ++i) g->kick(static_cast<unsigned>(i % 4));
             held = std::move(g);
         },
         true},
        {"guest memory shrunk and replaced while running",
         [](const fs::path& s) {
             {
                 auto g = HostileGuest::connect(s);
                 if (!g || !g->open_stream(0)) return;
                 tx_message(*g, 0, 0, 1, 1920);
                 g->publish(kTx, 0);
                 ASSERT_EQ(::ftruncate(g->fe().memory_fd(), 4096), 0);
                 g->kick(kTx);
                 g->kick(kControl);
                 EXPECT_TRUE(eventually([&] { return !g->fe().send_raw(Request::GetFeatures, {}, {}, 8); }, 3000))
                     << "a front-end whose memory shrank was not disconnected";
             }
             auto g = HostileGuest::connect(s);
             if (!g || !g->open_stream(0)) return;
             const int other = ::memfd_create("hostile-other", MFD_CLOEXEC);
             ::ftruncate(other, 1 << 20);
             (void)g->fe().send_raw(Request::SetMemTable, encode(MemoryTable{{RegionDesc{0x100000, 1 << 20, 0x20000000, 0}}}),
                                    std::span(&other, 1));
             ::close(other);
             g->kick(kTx);
             (void)g->fe().send_raw(Request::SetVringNum, encode(VringState{kTx, 16}));
             (void)g->fe().send_raw(Request::SetVringAddr, encode(VringAddr{kTx, 0, 0x20000000, 0x20001000, 0x20000800, 0}));
             g->kick(kTx);
             held = std::move(g);
         },
         true},
        {"disconnects mid-stream and at every step of the stop sequence",
         [](const fs::path& s) {
             for (int step = 0; step < 4; ++step) {
                 auto g = HostileGuest::connect(s);
                 if (!g || !g->open_stream(0)) return;
                 for (std::uint16_t h = 0; h < 8; ++h) {
                     tx_message(*g, h, h, 1, 1920);
                     g->publish(kTx, h);
                 }
                 g->kick(kTx);
                 if (step >= 1) (void)g->fe().send_raw(Request::SetVringEnable, encode(VringState{kTx, 0}));
                 if (step >= 2) (void)g->fe().send_raw(Request::GetVringBase, encode(VringState{kTx, 0}), {}, 8);
                 if (step >= 3) (void)g->fe().send_raw(Request::ResetDevice, {});
             }
         }},
    };
}

struct Baseline {
    long rss_kib;
    int fds;
};

class Hostile : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("vsnd-hostile-" + std::to_string(::getpid()));
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }
    fs::path dir_;
};

// The judge: what every case must leave behind.
::testing::AssertionResult healthy(Daemon& d, const Baseline& base, std::uintmax_t log_from, bool holding) {
    if (!d.alive()) return ::testing::AssertionFailure() << "the daemon died";
    if (holding) {
        const double cpu = d.cpu_share(kIdleWindow);
        held.reset();
        if (cpu > kIdleCpuShare)
            return ::testing::AssertionFailure() << "busy while the attacker holds its connection: " << cpu * 100 << " % of a core";
    }
    if (!front_end_plays(d.socket(), 2400)) return ::testing::AssertionFailure() << "a clean front-end could not play";
    if (!d.alive()) return ::testing::AssertionFailure() << "the daemon died";
    if (const double cpu = d.cpu_share(kIdleWindow); cpu > kIdleCpuShare)
        return ::testing::AssertionFailure() << "busy after the case: " << cpu * 100 << " % of a core";
    if (!eventually([&] { return d.open_fds() <= base.fds; }, 3000))
        return ::testing::AssertionFailure() << "open fds " << d.open_fds() << ", baseline " << base.fds;
    if (const long rss = d.rss_kib(); rss > base.rss_kib + kRssSlackKib)
        return ::testing::AssertionFailure() << "RSS " << rss << " KiB, baseline " << base.rss_kib << " KiB";
    if (const auto n = d.log_bytes() - log_from; n > kLogBytesPerCase)
        return ::testing::AssertionFailure() << "the case made the daemon log " << n << " bytes";
    const std::string log = d.log_text(log_from);
    for (const char* report : {"AddressSanitizer", "LeakSanitizer", "runtime error:", "ThreadSanitizer"})
        if (log.find(report) != std::string::npos) return ::testing::AssertionFailure() << "sanitizer report:\n" << log;
    return ::testing::AssertionSuccess();
}

TEST_F(Hostile, EveryCaseLeavesTheDaemonHealthy) {
    Daemon d(dir_);
    ASSERT_TRUE(eventually([&] { return fs::exists(d.socket()); })) << d.log_text();
    ASSERT_TRUE(front_end_plays(d.socket(), 2400)) << d.log_text(); // warm-up: what a clean session leaves
    ASSERT_TRUE(eventually([&] { return d.cpu_share(std::chrono::milliseconds(200)) < kIdleCpuShare; }));
    const Baseline base{d.rss_kib(), d.open_fds()};
    for (const auto& c : cases()) {
        SCOPED_TRACE(c.name);
        const auto log_from = d.log_bytes();
        const auto t0 = std::chrono::steady_clock::now();
        c.attack(d.socket());
        const auto attack_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
        EXPECT_TRUE(healthy(d, base, log_from, c.holds_connection)) << "case: " << c.name;
        held.reset();
        std::printf("[ hostile  ] %-90s attack %5lld ms, rss %ld KiB (baseline %ld), fds %d, log +%ju B\n", c.name,
                    static_cast<long long>(attack_ms.count()), d.rss_kib(), base.rss_kib, d.open_fds(),
                    d.log_bytes() - log_from);
        if (std::getenv("VSND_HOSTILE_VERBOSE")) std::printf("%s", d.log_text(log_from).c_str());
        if (!d.alive()) break;
    }
    EXPECT_EQ(d.terminate(), 0) << d.log_text();
    const std::string log = d.log_text();
    for (const char* report : {"AddressSanitizer", "LeakSanitizer", "runtime error:"})
        EXPECT_EQ(log.find(report), std::string::npos) << log;
}

// A front-end SIGKILLed at 50 points of a session, as a QEMU that dies: in the handshake, at
// PREPARE, mid-stream and in the drain (a quarter each). The daemon serves the next front-end every
// time, and afterwards passes the same judge as after an attack.
TEST_F(Hostile, FrontEndKilledAtFiftyPointsOfASession) {
    Daemon d(dir_);
    ASSERT_TRUE(eventually([&] { return fs::exists(d.socket()); })) << d.log_text();
    ASSERT_TRUE(front_end_plays(d.socket(), 2400)) << d.log_text();
    ASSERT_TRUE(eventually([&] { return d.cpu_share(std::chrono::milliseconds(200)) < kIdleCpuShare; }));
    const Baseline base{d.rss_kib(), d.open_fds()};
    const auto log_from = d.log_bytes();
    std::mt19937 rng(5);
    constexpr int kKills = 50;
    int reached = 0;
    for (int i = 0; i < kKills; ++i) {
        int p[2];
        ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
        const pid_t child = ::fork();
        ASSERT_GE(child, 0);
        if (child == 0) {
            ::close(p[0]);
            auto mark = [fd = p[1]](char c) { [[maybe_unused]] auto n = ::write(fd, &c, 1); };
            MonotonicClock clock;
            mark('c');
            auto fe = Frontend::connect(d.socket());
            if (!fe) _exit(2);
            driver::SoundDriver drv(**fe, clock);
            if (!drv.probe()) _exit(3);
            _exit(play(drv, 9600, std::nullopt, mark) ? 0 : 4);
        }
        ::close(p[1]);
        // The phase this kill aims at, and how long after its marker it strikes.
        const char target = "cpsd"[i % 4];
        const int max_us = target == 'c' ? 2000 : target == 'p' ? 500 : target == 's' ? 100000 : 40000;
        bool seen = false;
        for (char c; !seen && ::read(p[0], &c, 1) == 1;) seen = c == target;
        ::close(p[0]);
        if (seen) {
            ++reached;
            std::this_thread::sleep_for(std::chrono::microseconds(rng() % max_us));
        }
        ::kill(child, SIGKILL);
        ::waitpid(child, nullptr, 0);
        ASSERT_TRUE(d.alive()) << "after kill " << i + 1 << " (phase " << target << ")\n" << d.log_text(log_from);
    }
    EXPECT_EQ(reached, kKills) << "some sessions ended before the phase their kill aimed at";
    EXPECT_TRUE(healthy(d, base, log_from, false));
    std::printf("[ hostile  ] %d front-ends killed; rss %ld KiB (baseline %ld), fds %d, log +%ju B\n", kKills, d.rss_kib(),
                base.rss_kib, d.open_fds(), d.log_bytes() - log_from);
    EXPECT_EQ(d.terminate(), 0) << d.log_text();
}

} // namespace
} // namespace vsnd::test
