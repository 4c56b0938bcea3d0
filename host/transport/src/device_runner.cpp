#include "vsnd/transport/device_runner.hpp"

#include <unistd.h>

#include <chrono>

namespace vsnd::transport {

DeviceRunner::DeviceRunner(boost::asio::io_context& io, LoopbackDeviceEnd& end) : io_(io), end_(end), timer_(io) {}

void DeviceRunner::start() {
    for (unsigned q = 0; q < wire::kQueueCount; ++q) {
        // The eventfd stays owned by the transport; asio watches a duplicate.
        kicks_.push_back(std::make_unique<boost::asio::posix::stream_descriptor>(io_, ::dup(end_.kick_fd(q))));
        arm_kick(q);
    }
    reschedule();
}

void DeviceRunner::stop() {
    stopped_ = true;
    timer_.cancel();
    for (auto& k : kicks_) k->cancel();
}

void DeviceRunner::arm_kick(unsigned q) {
    kicks_[q]->async_wait(boost::asio::posix::stream_descriptor::wait_read, [this, q](const boost::system::error_code& ec) {
        if (ec || stopped_) return;
        end_.dispatch_kicks();
        reschedule();
        arm_kick(q);
    });
}

void DeviceRunner::reschedule() {
    if (stopped_) return;
    const auto next = end_.device().next_deadline();
    if (!next) {
        timer_.cancel();
        return;
    }
    timer_.expires_at(std::chrono::steady_clock::time_point(std::chrono::nanoseconds(*next)));
    timer_.async_wait([this](const boost::system::error_code& ec) {
        if (ec || stopped_) return;
        end_.device().process();
        reschedule();
    });
}

} // namespace vsnd::transport
