// The vhost-user backend: one front-end connection (QEMU) driving a SoundDevice, and the server
// that accepts such connections one at a time. Everything runs on one Boost.Asio io_context
// thread: the control socket here, the kick eventfds, backend wake-ups and the deadline timer in
// the connection's loop::DeviceLoop (the same loop the loopback transport uses).
//
// Life of a connection (docs/vhost-user.md §3): handshake; at DRIVER_OK the memory table and the
// four rings arrive and the device is attached once every ring has a size, addresses, a kick fd
// and is enabled; SET_VRING_ENABLE 0 / GET_VRING_BASE stop it (SoundDevice::reset()); EOF or a
// malformed message ends the connection: device reset, memory unmapped, every fd closed.
#pragma once

#include "vsnd/device/sound_device.hpp"
#include "vsnd/loop/device_loop.hpp"
#include "vsnd/vhost_user/protocol.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/logger.h>
#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <optional>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace vsnd::vhost_user {

// Everything offered is implemented by virtq::DeviceQueue.
inline constexpr std::uint64_t kOfferedFeatures =
    kFeatureVersion1 | kFeatureRingIndirectDesc | kFeatureRingEventIdx | kFeatureProtocolFeatures;
inline constexpr std::uint64_t kOfferedProtocolFeatures = kProtocolMq | kProtocolReplyAck | kProtocolConfig; // 0x209

// A guest memory region mapped here (MAP_SHARED from the front-end's fd), guarded against the file
// shrinking (the SIGBUS turns into zero pages and faulted(): backend/src/memory_guard.hpp).
class Mapping {
public:
    Mapping(void* base, std::size_t len);
    ~Mapping();
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    std::uint8_t* data() const { return static_cast<std::uint8_t*>(base_); }
    bool faulted() const;

private:
    void* base_;
    std::size_t len_;
    int guard_slot_;
};

class Connection : public std::enable_shared_from_this<Connection> {
public:
    using Socket = boost::asio::local::stream_protocol::socket;

    Connection(boost::asio::io_context& io, Socket socket, device::SoundDevice& device,
               std::shared_ptr<spdlog::logger> log, std::uint64_t id = 0);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // Starts serving; `on_closed` is posted once the connection has ended and released everything.
    void start(std::function<void()> on_closed = {});
    // Ends the connection now (device reset, memory unmapped, fds closed). Idempotent.
    void close(const std::string& reason, bool error = false);
    bool closed() const { return closed_; }
    bool device_attached() const { return attached_; }

    // A front-end must send SET_OWNER within `stall_timeout` of connecting, and finish any message
    // it has begun within it: the server serves one front-end at a time, so one that stalls would
    // keep every later one out.
    void set_stall_timeout(std::chrono::milliseconds t) { stall_timeout_ = t; }

private:
    struct Ring {
        std::uint32_t num = 0;       // 0: not set
        std::uint16_t base = 0;      // next avail index to process when (re)started
        bool addr_set = false;
        VringAddr addr;
        bool enabled = false;
        bool kick = false;           // the loop watches its kick fd
        UniqueFd call, err;
        std::unique_ptr<virtq::DeviceQueue> queue;
    };
    // A request failed: fatal ends the connection, otherwise it is refused (ack 1 if asked).
    struct Failure {
        bool fatal;
        std::string reason;
    };
    using Reply = std::optional<std::vector<std::uint8_t>>; // explicit reply payload, if any
    using Outcome = Expected<Reply, Failure>;

    void read_some();
    void arm_read();
    void arm_watchdog();
    void arm_fault_watch();
    void flush();
    void send_reply(std::uint32_t request, std::span<const std::uint8_t> payload);
    void handle(Message m);
    Outcome dispatch(Message& m);
    Outcome set_mem_table(Message& m);
    Outcome set_vring_addr(const VringAddr& a);
    Outcome set_vring_file(Request r, const VringFile& f, std::vector<UniqueFd>& fds);
    Outcome get_config(const ConfigSpace& c);

    std::optional<Failure> maybe_attach();
    void detach(const char* why);
    void drop_kick(unsigned q);
    void signal_call(unsigned q);
    void teardown();

    boost::asio::io_context& io_;
    Socket socket_;
    device::SoundDevice& device_;
    std::shared_ptr<spdlog::logger> log_;
    std::uint64_t id_;
    std::function<void()> on_closed_;
    FrameReader reader_;
    std::vector<std::uint8_t> out_;   // replies not yet sent (the peer is not reading)
    bool writing_ = false;
    bool closed_ = false;
    bool owner_ = false;           // SET_OWNER seen
    bool watching_message_ = false;
    std::uint64_t watch_gen_ = 0;
    std::chrono::milliseconds stall_timeout_{5000};
    boost::asio::steady_timer watchdog_;
    boost::asio::posix::stream_descriptor fault_watch_; // guarded guest memory faulted (SIGBUS)

    std::uint64_t features_ = 0, protocol_features_ = 0;
    // Declared before the rings: DeviceQueues refer to memory_, which refers to mappings_.
    std::vector<std::unique_ptr<Mapping>> mappings_;
    virtq::GuestMemory memory_;
    std::array<Ring, wire::kQueueCount> rings_;
    bool attached_ = false;
    loop::DeviceLoop loop_;
    std::uint64_t call_errors_ = 0;
};

// Listens on a Unix socket and serves one front-end at a time; the next one is accepted when the
// current one has gone. The Server must outlive io_context::run().
struct ServerOptions {
    // Who may connect to the socket: its mode (default 0600: the user running vsnd-host, and
    // root) and, optionally, its group (with a mode such as 0660 for a QEMU in that group).
    mode_t mode = 0600;
    std::optional<gid_t> group;
    // A connection silent in its handshake or mid-message this long is closed (Connection); 0:
    // never (a QEMU that creates the chardev long before it adds the device).
    std::chrono::milliseconds stall_timeout{5000};
};

class Server {
public:
    Server(boost::asio::io_context& io, device::SoundDevice& device, std::shared_ptr<spdlog::logger> log,
           ServerOptions options = {});
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Claims `path` (a stale socket file nobody listens on is replaced; a live one is an error),
    // binds it with the access asked for (no other user can connect even for an instant) and
    // starts accepting.
    Expected<Done, std::string> listen(const std::filesystem::path& path);
    // Closes the listener and the current connection, removes the socket file.
    void stop();

    // For tests and statistics (readable from any thread).
    std::uint64_t connections_accepted() const { return accepted_.load(); }
    std::uint64_t connections_closed() const { return finished_.load(); }
    bool serving() const { return serving_.load(); }

private:
    void accept_next();

    boost::asio::io_context& io_;
    device::SoundDevice& device_;
    std::shared_ptr<spdlog::logger> log_;
    ServerOptions access_;
    boost::asio::local::stream_protocol::acceptor acceptor_;
    boost::asio::steady_timer retry_;
    std::filesystem::path path_;
    ino_t inode_ = 0;
    std::shared_ptr<Connection> current_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
    bool stopped_ = false;
    std::atomic<std::uint64_t> accepted_{0}, finished_{0};
    std::atomic<bool> serving_{false};
};

// Whether `path` can be bound: absent, or a socket nobody listens on (then it is removed).
// Otherwise one line saying why not.
Expected<Done, std::string> claim_socket_path(const std::filesystem::path& path);

} // namespace vsnd::vhost_user
