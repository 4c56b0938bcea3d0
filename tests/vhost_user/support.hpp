// Helpers for the vhost-user tests: a log sink that keeps lines, a raw front-end socket that
// sends arbitrary bytes and fds and reads replies with a timeout, and a backend server on its own
// io_context thread.
#pragma once

#include "../support/eventually.hpp"

#include "vsnd/audio/test_signal.hpp"
#include "vsnd/backends/wav_backend.hpp"
#include "vsnd/audio/wav_file.hpp"
#include "vsnd/vhost_user/backend.hpp"
#include "vsnd/vhost_user/protocol.hpp"
#include "vsnd/vhost_user/socket_io.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <gtest/gtest.h>
#include <spdlog/sinks/base_sink.h>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace vsnd::test {

// Keeps every formatted log line (any thread).
class LogCapture final : public spdlog::sinks::base_sink<std::mutex> {
public:
    std::vector<std::string> lines() {
        std::lock_guard l(mutex_);
        return lines_;
    }
    std::size_t count(const std::string& needle, spdlog::level::level_enum level = spdlog::level::trace) {
        std::lock_guard l(mutex_);
        std::size_t n = 0;
        for (std::size_t i = 0; i < lines_.size(); ++i)
            if (levels_[i] >= level && lines_[i].find(needle) != std::string::npos) ++n;
        return n;
    }
    std::size_t errors() { return count("", spdlog::level::err); }
    std::string dump() {
        std::lock_guard l(mutex_);
        std::string s;
        for (const auto& l : lines_) s += l + "\n";
        return s;
    }

protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        lines_.emplace_back(msg.payload.data(), msg.payload.size());
        levels_.push_back(msg.level);
    }
    void flush_() override {}

private:
    std::vector<std::string> lines_;
    std::vector<spdlog::level::level_enum> levels_;
};

inline std::shared_ptr<spdlog::logger> make_logger(std::shared_ptr<LogCapture> sink) {
    auto l = std::make_shared<spdlog::logger>("test", sink);
    l->set_level(spdlog::level::debug);
    return l;
}

inline int count_open_fds() {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) (void)e, ++n;
    return n;
}

inline int count_mappings(const std::string& name) {
    std::ifstream maps("/proc/self/maps");
    std::string line;
    int n = 0;
    while (std::getline(maps, line))
        if (line.find(name) != std::string::npos) ++n;
    return n;
}

inline bool fd_is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

inline vhost_user::UniqueFd make_eventfd(std::uint64_t initial = 0) {
    return vhost_user::UniqueFd(::eventfd(static_cast<unsigned>(initial), EFD_CLOEXEC | EFD_NONBLOCK));
}

// The front-end side of a control socket, byte-exact.
class RawPeer {
public:
    explicit RawPeer(int fd) : fd_(fd) {}
    static RawPeer connect(const std::filesystem::path& path) {
        int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
        EXPECT_EQ(::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
        return RawPeer(s);
    }
    int fd() const { return fd_.get(); }
    void close() { fd_.reset(); }

    bool send_bytes(std::span<const std::uint8_t> bytes, std::vector<int> fds = {}) {
        std::size_t done = 0;
        while (done < bytes.size()) {
            auto n = vhost_user::send_with_fds(fd_.get(), bytes.subspan(done), done == 0 ? std::span<const int>(fds)
                                                                                          : std::span<const int>{}, false);
            if (!n) return false;
            done += *n;
        }
        return true;
    }
    bool send(vhost_user::Request r, std::uint32_t flags, std::span<const std::uint8_t> payload, std::vector<int> fds = {}) {
        return send_bytes(vhost_user::encode_message(r, flags, payload), std::move(fds));
    }
    // Exactly n bytes, or what arrived before the timeout / EOF.
    std::vector<std::uint8_t> read(std::size_t n, int timeout_ms = 3000) {
        std::vector<std::uint8_t> out;
        const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        while (out.size() < n) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
            if (left.count() <= 0) break;
            pollfd p{fd_.get(), POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
            std::vector<std::uint8_t> buf(n - out.size());
            auto r = vhost_user::receive_with_fds(fd_.get(), buf, true);
            if (!r) continue;
            if (r->bytes == 0) { eof_ = true; break; }
            out.insert(out.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(r->bytes));
        }
        return out;
    }
    // True if the backend closed the connection within the timeout.
    bool closed_by_peer(int timeout_ms = 3000) {
        if (eof_) return true;
        const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        while (std::chrono::steady_clock::now() < end) {
            pollfd p{fd_.get(), POLLIN, 0};
            if (::poll(&p, 1, 50) > 0) {
                std::uint8_t b[256];
                auto r = vhost_user::receive_with_fds(fd_.get(), b, true);
                if (r && r->bytes == 0) return eof_ = true;
                if (!r && r.error() != EAGAIN) return true; // ECONNRESET
            }
        }
        return false;
    }
    // Nothing arrives within `ms`.
    bool quiet(int ms = 50) {
        pollfd p{fd_.get(), POLLIN, 0};
        return ::poll(&p, 1, ms) == 0;
    }

private:
    vhost_user::UniqueFd fd_;
    bool eof_ = false;
};

inline std::vector<std::uint8_t> reply_bytes(vhost_user::Request r, std::span<const std::uint8_t> payload) {
    return vhost_user::encode_reply(static_cast<std::uint32_t>(r), payload);
}

// A backend server with the WAV backend on its own io_context thread.
struct ServerRig {
    explicit ServerRig(device::Topology topology = device::Topology::standard(1, 1),
                       device::CompletionPolicy policy = device::CompletionPolicy::Played,
                       vhost_user::ServerOptions options = {})
        : dir(std::filesystem::temp_directory_path() /
              ("vsnd-vhu-" + std::to_string(::getpid()) + "-" + std::to_string(++counter()))),
          log_sink(std::make_shared<LogCapture>()), log(make_logger(log_sink)),
          backend(clock, (std::filesystem::create_directories(dir), dir), dir / "capture.wav"),
          device(std::move(topology), backend, clock, policy), server(io, device, log, options), guard(io.get_executor()) {
        device.set_logger([l = log](const std::string& m) { l->warn("device: {}", m); });
        socket = dir / "vsnd.sock";
        auto r = server.listen(socket);
        EXPECT_TRUE(r) << (r ? "" : r.error());
        thread = std::thread([this] { io.run(); });
    }
    ~ServerRig() {
        stop();
        std::filesystem::remove_all(dir);
    }
    void stop() {
        if (!thread.joinable()) return;
        boost::asio::post(io, [this] { server.stop(); guard.reset(); io.stop(); });
        thread.join();
    }
    // Runs fn on the server thread and waits for it.
    template <class Fn>
    auto on_server(Fn fn) {
        std::packaged_task<decltype(fn())()> task(std::move(fn));
        auto f = task.get_future();
        boost::asio::post(io, [&task] { task(); });
        return f.get();
    }
    // Writes `frames` of the TestSignal (S16, 48 kHz, stereo) as the capture source.
    void write_capture(std::uint64_t frames) {
        const device::StreamFormat sf{wire::Direction::Input, wire::PcmFormat::S16, 48000, 2, 0, 0};
        auto w = audio::WavFileWriter::open(dir / "capture.wav", sf.spec(), false);
        ASSERT_TRUE(w);
        std::vector<std::uint8_t> buf(frames * 4);
        audio::TestSignal(wire::PcmFormat::S16, 2).fill(buf, 0);
        (*w)->write(buf);
    }

    static int& counter() {
        static int c = 0;
        return c;
    }

    std::filesystem::path dir, socket;
    std::shared_ptr<LogCapture> log_sink;
    std::shared_ptr<spdlog::logger> log;
    MonotonicClock clock;
    backends::WavBackend backend;
    device::SoundDevice device;
    boost::asio::io_context io;
    vhost_user::Server server;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard;
    std::thread thread;
};

} // namespace vsnd::test
