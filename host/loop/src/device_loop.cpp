#include "vsnd/loop/device_loop.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace vsnd::loop {

DeviceLoop::DeviceLoop(boost::asio::io_context& io, device::SoundDevice& device)
    : io_(io), device_(device), wake_(std::make_shared<EventFd>()), wake_watch_(io, ::dup(wake_->fd())), timer_(io) {
    device_.set_waker([weak = std::weak_ptr<EventFd>(wake_)] {
        if (auto wake = weak.lock()) wake->signal();
    });
    arm_wake();
}

DeviceLoop::~DeviceLoop() {
    *alive_ = false;
    stop();
}

Expected<Done, std::string> DeviceLoop::watch_kick(wire::QueueIndex q, int fd) {
    const auto i = static_cast<unsigned>(q);
    drop_kick(q);
    auto sd = std::make_unique<boost::asio::posix::stream_descriptor>(io_);
    boost::system::error_code ec;
    sd->assign(fd, ec); // registers with epoll: fails for fds that cannot be polled
    if (ec) return Unexpected{ec.message()};
    sd->non_blocking(true, ec);
    kicks_[i].fd = std::move(sd);
    stopped_ = false;
    arm_kick(i);
    return Done{};
}

void DeviceLoop::drop_kick(wire::QueueIndex q) {
    auto& k = kicks_[static_cast<unsigned>(q)];
    ++k.generation;
    k.fd.reset(); // cancels its wait and closes the fd
}

void DeviceLoop::arm_kick(unsigned q) {
    auto& k = kicks_[q];
    if (!k.fd) return;
    k.fd->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                     [this, alive = alive_, q, gen = k.generation](const boost::system::error_code& ec) {
                         if (!*alive || stopped_ || gen != kicks_[q].generation) return;
                         if (ec) {
                             if (kick_error_) kick_error_(static_cast<wire::QueueIndex>(q), ec.message());
                             return;
                         }
                         on_kick(q);
                     });
}

void DeviceLoop::on_kick(unsigned q) {
    std::uint64_t v;
    const ssize_t n = ::read(kicks_[q].fd->native_handle(), &v, sizeof v);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        // Not an eventfd (EOF) or broken: watching it would spin.
        if (kick_error_) kick_error_(static_cast<wire::QueueIndex>(q), n == 0 ? "end of file" : std::strerror(errno));
        return;
    }
    if (device_.attached()) {
        device_.on_kick(static_cast<wire::QueueIndex>(q));
        reschedule();
    }
    arm_kick(q);
}

void DeviceLoop::arm_wake() {
    wake_watch_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                           [this, alive = alive_](const boost::system::error_code& ec) {
                               if (!*alive || ec) return;
                               wake_->consume();
                               if (!stopped_ && device_.attached()) run_device();
                               arm_wake();
                           });
}

void DeviceLoop::scan_all() {
    stopped_ = false;
    for (unsigned q = 0; q < wire::kQueueCount && device_.attached(); ++q) device_.on_kick(static_cast<wire::QueueIndex>(q));
    reschedule();
}

void DeviceLoop::run_device() {
    device_.process();
    reschedule();
}

void DeviceLoop::reschedule() {
    if (stopped_ || !device_.attached()) {
        timer_.cancel();
        return;
    }
    const auto next = device_.next_deadline();
    if (!next) {
        timer_.cancel();
        return;
    }
    timer_.expires_at(std::chrono::steady_clock::time_point(std::chrono::nanoseconds(*next)));
    timer_.async_wait([this, alive = alive_, due = timer_.expiry()](const boost::system::error_code& ec) {
        if (!*alive || ec || stopped_ || !device_.attached()) return;
        const std::int64_t late =
            std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - due).count();
        ++lateness_.wakeups;
        lateness_.max_ns = std::max(lateness_.max_ns, late);
        if (late > 10'000'000) ++lateness_.over_10ms;
        run_device();
    });
}

void DeviceLoop::stop() {
    stopped_ = true;
    timer_.cancel();
    for (unsigned q = 0; q < wire::kQueueCount; ++q) drop_kick(static_cast<wire::QueueIndex>(q));
}

} // namespace vsnd::loop
