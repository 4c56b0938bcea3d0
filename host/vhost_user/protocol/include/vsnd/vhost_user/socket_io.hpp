// Unix-socket I/O with SCM_RIGHTS, as vhost-user needs it (Asio has no fd passing).
#pragma once

#include "vsnd/expected.hpp"
#include "vsnd/vhost_user/unique_fd.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace vsnd::vhost_user {

struct Received {
    std::size_t bytes = 0;           // 0: end of stream
    std::vector<UniqueFd> fds;       // owned: closed unless the caller keeps them
    bool fds_truncated = false;      // the sender attached more fds than we had room for
};

// One recvmsg() into `buf` with room for kMaxFds fds, MSG_CMSG_CLOEXEC. Error: errno
// (EAGAIN when nothing is there and `dontwait`).
Expected<Received, int> receive_with_fds(int socket, std::span<std::uint8_t> buf, bool dontwait);

// One sendmsg() of `bytes` with `fds` attached (MSG_NOSIGNAL). Returns bytes sent or errno.
Expected<std::size_t, int> send_with_fds(int socket, std::span<const std::uint8_t> bytes, std::span<const int> fds,
                                         bool dontwait);

} // namespace vsnd::vhost_user
