#include "vsnd/event_fd.hpp"

#include <sys/epoll.h>
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

ReadableSet::ReadableSet() {
    fd_ = epoll_create1(EPOLL_CLOEXEC);
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
}

ReadableSet::~ReadableSet() { ::close(fd_); }

void ReadableSet::add(int fd) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(fd_, EPOLL_CTL_ADD, fd, &ev) < 0) throw std::system_error(errno, std::generic_category(), "epoll_ctl");
}

} // namespace vsnd
