#include "vsnd/vhost_user/socket_io.hpp"

#include "vsnd/vhost_user/protocol.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace vsnd::vhost_user {

Expected<Received, int> receive_with_fds(int socket, std::span<std::uint8_t> buf, bool dontwait) {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
    iovec iov{buf.data(), buf.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n;
    do n = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC | (dontwait ? MSG_DONTWAIT : 0));
    while (n < 0 && errno == EINTR);
    if (n < 0) return Unexpected{errno};

    Received r;
    r.bytes = static_cast<std::size_t>(n);
    r.fds_truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
    // Take ownership of every fd before anything can fail, so none leaks.
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            r.fds.emplace_back(fd);
        }
    }
    return r;
}

Expected<std::size_t, int> send_with_fds(int socket, std::span<const std::uint8_t> bytes, std::span<const int> fds,
                                         bool dontwait) {
    if (fds.size() > kMaxFds) return Unexpected{EINVAL};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
    iovec iov{const_cast<std::uint8_t*>(bytes.data()), bytes.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (!fds.empty()) {
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    ssize_t n;
    do n = ::sendmsg(socket, &msg, MSG_NOSIGNAL | (dontwait ? MSG_DONTWAIT : 0));
    while (n < 0 && errno == EINTR);
    if (n < 0) return Unexpected{errno};
    return static_cast<std::size_t>(n);
}

} // namespace vsnd::vhost_user
