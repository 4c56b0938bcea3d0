#include "vsnd/vhost_user/backend.hpp"

#include <boost/asio/post.hpp>
#include <fmt/format.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace vsnd::vhost_user {

Expected<Done, std::string> claim_socket_path(const std::filesystem::path& path) {
    sockaddr_un addr{};
    const std::string p = path.string();
    if (p.empty() || p.size() >= sizeof addr.sun_path)
        return Unexpected{fmt::format("socket path '{}' is empty or longer than {} bytes", p, sizeof addr.sun_path - 1)};
    struct stat st {};
    if (::lstat(p.c_str(), &st) < 0) {
        if (errno == ENOENT) return Done{};
        return Unexpected{fmt::format("cannot use socket path {}: {}", p, std::strerror(errno))};
    }
    if (!S_ISSOCK(st.st_mode)) return Unexpected{fmt::format("{} exists and is not a socket", p)};
    // Is anyone listening? A non-blocking connect never waits (a full backlog is EAGAIN: in use).
    const int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0) return Unexpected{fmt::format("socket: {}", std::strerror(errno))};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
    const int rc = ::connect(s, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    const int err = errno;
    ::close(s);
    if (rc == 0 || err == EAGAIN || err == EINPROGRESS)
        return Unexpected{fmt::format("socket {} is in use by another running backend", p)};
    if (err != ECONNREFUSED) return Unexpected{fmt::format("cannot probe socket {}: {}", p, std::strerror(err))};
    if (::unlink(p.c_str()) < 0 && errno != ENOENT)
        return Unexpected{fmt::format("cannot remove stale socket {}: {}", p, std::strerror(errno))};
    return Done{};
}

Server::Server(boost::asio::io_context& io, device::SoundDevice& device, std::shared_ptr<spdlog::logger> log,
               ServerOptions options)
    : io_(io), device_(device), log_(std::move(log)), access_(options), acceptor_(io), retry_(io) {}

Server::~Server() {
    *alive_ = false;
    stop();
}

Expected<Done, std::string> Server::listen(const std::filesystem::path& path) {
    if (auto c = claim_socket_path(path); !c) return c;
    boost::system::error_code ec;
    const boost::asio::local::stream_protocol::endpoint ep(path.string());
    acceptor_.open(ep.protocol(), ec);
    if (!ec) {
        // Linux binds a socket file with the socket inode's mode (minus the umask): owner-only
        // from its first instant, then given the mode and group asked for. (No process-wide umask:
        // backend threads may be creating files.)
        if (::fchmod(acceptor_.native_handle(), 0600) != 0) ec = boost::system::error_code(errno, boost::system::system_category());
        else acceptor_.bind(ep, ec);
    }
    if (ec) {
        acceptor_.close();
        return Unexpected{fmt::format("cannot listen on {}: {}", path.string(), ec.message())};
    }
    if (access_.group && ::lchown(path.c_str(), static_cast<uid_t>(-1), *access_.group) != 0) {
        const int e = errno;
        acceptor_.close();
        ::unlink(path.c_str());
        return Unexpected{fmt::format("cannot give {} to group {}: {}", path.string(), *access_.group, std::strerror(e))};
    }
    if (::chmod(path.c_str(), access_.mode & 0777) != 0) {
        const int e = errno;
        acceptor_.close();
        ::unlink(path.c_str());
        return Unexpected{fmt::format("cannot set mode {:o} on {}: {}", access_.mode & 0777, path.string(), std::strerror(e))};
    }
    path_ = path;
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0) inode_ = st.st_ino;
    acceptor_.listen(boost::asio::socket_base::max_listen_connections, ec);
    if (ec) {
        stop();
        return Unexpected{fmt::format("cannot listen on {}: {}", path.string(), ec.message())};
    }
    stopped_ = false;
    log_->info("listening on {}", path_.string());
    accept_next();
    return Done{};
}

void Server::accept_next() {
    if (stopped_ || current_) return;
    acceptor_.async_accept([this, alive = std::weak_ptr<bool>(alive_)](const boost::system::error_code& ec,
                                                                       boost::asio::local::stream_protocol::socket s) {
        if (alive.expired() || stopped_ || ec == boost::asio::error::operation_aborted) return;
        if (ec) {
            // EMFILE and the like: try again shortly rather than spin or give up.
            log_->error("accept: {}", ec.message());
            retry_.expires_after(std::chrono::milliseconds(100));
            retry_.async_wait([this, alive](const boost::system::error_code& e) {
                if (!e && !alive.expired()) accept_next();
            });
            return;
        }
        const auto id = ++accepted_;
        serving_ = true;
        current_ = std::make_shared<Connection>(io_, std::move(s), device_, log_, id);
        current_->set_stall_timeout(access_.stall_timeout);
        current_->start([this, alive] {
            if (alive.expired() || stopped_) return; // stop() already let go of it
            current_.reset();
            serving_ = false;
            ++finished_;
            accept_next();
        });
    });
}

void Server::stop() {
    if (stopped_ && !acceptor_.is_open() && !current_) return;
    stopped_ = true;
    boost::system::error_code ec;
    acceptor_.close(ec);
    retry_.cancel();
    if (current_) {
        current_->close("backend shutting down");
        current_.reset();
        serving_ = false;
        ++finished_;
    }
    // Remove the socket file only if it is still ours (not one a successor bound meanwhile).
    if (!path_.empty()) {
        struct stat st {};
        if (::lstat(path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == inode_) ::unlink(path_.c_str());
        path_.clear();
    }
}

} // namespace vsnd::vhost_user
