#include "vsnd/event_fd.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

namespace vsnd {

EventFd::EventFd() {
    fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
}

EventFd::~EventFd() { ::close(fd_); }

void EventFd::signal() const {
    const std::uint64_t one = 1;
    // EAGAIN only when the counter is saturated, which still means "signalled".
    [[maybe_unused]] auto n = ::write(fd_, &one, sizeof one);
}

bool EventFd::consume() const {
    std::uint64_t v;
    return ::read(fd_, &v, sizeof v) == sizeof v;
}

} // namespace vsnd
